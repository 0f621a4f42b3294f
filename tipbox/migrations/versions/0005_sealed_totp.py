"""room for sealed TOTP secrets

Revision ID: 0005
Revises: 0004

The secrets themselves are sealed by `tipbox init` (AccountService.seal_plaintext_secrets),
which holds the key; a migration does not.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('journalists', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=64),
                              type_=sa.String(length=128), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('journalists', schema=None) as batch_op:
        batch_op.alter_column('totp_secret', existing_type=sa.String(length=128),
                              type_=sa.String(length=64), existing_nullable=False)
