"""flood defence: recent counts and spent tickets

Revision ID: 0007
Revises: 0006

Two small tables for tipbox.flood: how many codenames and submissions were made in the
last two ten-minute buckets, and the proof-of-work tickets already used (until they
expire). Both hold no identifier of any visitor.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'flood_counts',
        sa.Column('purpose', sa.String(length=16), nullable=False),
        sa.Column('bucket', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('purpose', 'bucket', name=op.f('pk_flood_counts')),
    )
    op.create_table(
        'spent_tickets',
        sa.Column('nonce', sa.String(length=32), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('nonce', name=op.f('pk_spent_tickets')),
    )
    with op.batch_alter_table('spent_tickets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spent_tickets_expires_at'), ['expires_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('spent_tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spent_tickets_expires_at'))
    op.drop_table('spent_tickets')
    op.drop_table('flood_counts')
