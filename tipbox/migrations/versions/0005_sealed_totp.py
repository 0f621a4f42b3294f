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
    # SQLite does not enforce a VARCHAR's length, and changing the type there means
    # rebuilding the table: nothing to gain, so only other databases are altered.
    if op.get_bind().dialect.name == 'sqlite':
        return
    op.alter_column('journalists', 'totp_secret', existing_type=sa.String(length=64),
                    type_=sa.String(length=128), existing_nullable=False)


def downgrade() -> None:
    # The column stays wide: sealed secrets (about 83 characters) would not fit in 64.
    # Older code cannot open them anyway; after a downgrade, `tipbox users reset` each
    # account.
    pass
