"""item numbers unique per source

Revision ID: 0006
Revises: 0005

Concurrent submissions from one source could read the same max(seq) and give two items
the same number. Sources with such duplicates get their items renumbered 1, 2, 3... in
their stored order (number, then the order the rows were written), and the database now
refuses a duplicate (source_id, seq), as it already did for replies.
"""
from __future__ import annotations

from itertools import groupby

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    # The order rows were written in: SQLite's rowid, PostgreSQL's physical position
    # (items are never updated in place, so ctid follows insertion).
    written = sa.literal_column('rowid' if bind.dialect.name == 'sqlite' else 'ctid')
    items = sa.table('items', sa.column('id', sa.String), sa.column('source_id', sa.Integer),
                     sa.column('seq', sa.Integer))
    duplicated = (sa.select(items.c.source_id).group_by(items.c.source_id, items.c.seq)
                  .having(sa.func.count() > 1))
    rows = bind.execute(sa.select(items.c.source_id, items.c.id, items.c.seq)
                        .where(items.c.source_id.in_(duplicated))
                        .order_by(items.c.source_id, items.c.seq, written)).all()
    for _source, group in groupby(rows, key=lambda row: row.source_id):
        for number, row in enumerate(group, start=1):
            if row.seq != number:
                bind.execute(items.update().where(items.c.id == row.id).values(seq=number))
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_items_source_id'), ['source_id', 'seq'])


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_items_source_id'), type_='unique')
