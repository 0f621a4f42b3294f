"""newsroom: journalists, reads, replies, stars, reply keys

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('journalists',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('passphrase_hash', sa.String(length=255), nullable=False),
    sa.Column('totp_secret', sa.String(length=64), nullable=False),
    sa.Column('last_totp_step', sa.BigInteger(), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journalists')),
    sa.UniqueConstraint('username', name=op.f('uq_journalists_username'))
    )
    op.create_table('replies',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('journalist_id', sa.Integer(), nullable=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('key_fingerprints', sa.Text(), nullable=False),
    sa.Column('for_source', sa.LargeBinary(), nullable=True),
    sa.Column('sent_on', sa.Date(), nullable=False),
    sa.Column('read_by_source', sa.Boolean(), nullable=False),
    sa.Column('deleted_by_source', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['journalist_id'], ['journalists.id'], name=op.f('fk_replies_journalist_id_journalists'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_replies_source_id_sources'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replies')),
    sa.UniqueConstraint('source_id', 'seq', name=op.f('uq_replies_source_id'))
    )
    with op.batch_alter_table('replies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replies_source_id'), ['source_id'], unique=False)

    op.create_table('item_reads',
    sa.Column('item_id', sa.String(length=32), nullable=False),
    sa.Column('journalist_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], name=op.f('fk_item_reads_item_id_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['journalist_id'], ['journalists.id'], name=op.f('fk_item_reads_journalist_id_journalists'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('item_id', 'journalist_id', name=op.f('pk_item_reads'))
    )
    with op.batch_alter_table('item_reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_item_reads_journalist_id'), ['journalist_id'], unique=False)

    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.add_column(sa.Column('starred', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('reply_public_key', sa.LargeBinary(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_column('reply_public_key')
        batch_op.drop_column('starred')

    with op.batch_alter_table('item_reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_item_reads_journalist_id'))

    op.drop_table('item_reads')
    with op.batch_alter_table('replies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replies_source_id'))

    op.drop_table('replies')
    op.drop_table('journalists')
