"""uploads sent in pieces

Revision ID: 0008
Revises: 0007

An upload sent in pieces (tipbox.intake.pieces) keeps its state between requests here:
which temp files, how far each got, where the packet check stands. No file name, no
plaintext; a time rounded up to ten minutes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'uploads',
        sa.Column('token', sa.String(length=32), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        sa.Column('session_key', sa.String(length=64), nullable=False),
        sa.Column('held_bytes', sa.BigInteger(), nullable=False),
        sa.Column('state', sa.Text(), nullable=False),
        sa.Column('idle_until', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['source_id'], ['sources.id'],
                                name=op.f('fk_uploads_source_id_sources'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token', name=op.f('pk_uploads')),
    )
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_uploads_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_uploads_session_key'), ['session_key'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('uploads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_uploads_session_key'))
        batch_op.drop_index(batch_op.f('ix_uploads_source_id'))
    op.drop_table('uploads')
