"""newsroom keys and audit log

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_at'), ['at'], unique=False)

    op.create_table('newsroom_keys',
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('public_key', sa.Text(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'active', 'retired', name='keystate', native_enum=False, length=16), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('uids', sa.Text(), nullable=False),
    sa.Column('key_created_on', sa.Date(), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('challenge_hash', sa.String(length=64), nullable=True),
    sa.Column('added_on', sa.Date(), nullable=False),
    sa.Column('activated_on', sa.Date(), nullable=True),
    sa.Column('retired_on', sa.Date(), nullable=True),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_newsroom_keys'))
    )
    with op.batch_alter_table('newsroom_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_newsroom_keys_state'), ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('newsroom_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_newsroom_keys_state'))

    op.drop_table('newsroom_keys')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_at'))

    op.drop_table('audit_log')
