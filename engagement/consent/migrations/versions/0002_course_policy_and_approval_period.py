"""Courses get a source-deletion policy; approvals a validity period (existing ones: one year after approval).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from engagement.consent.registry import one_year_after

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch (copy and rename) of courses would break the foreign keys that point at it.
    op.add_column("courses", sa.Column("delete_source", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("approvals", sa.Column("valid_until", sa.Date))
    approvals = sa.table("approvals", sa.column("id", sa.Integer), sa.column("approved_on", sa.Date), sa.column("valid_until", sa.Date))
    connection = op.get_bind()
    for row in connection.execute(sa.select(approvals.c.id, approvals.c.approved_on)).all():
        connection.execute(approvals.update().where(approvals.c.id == row.id).values(valid_until=one_year_after(row.approved_on)))
    with op.batch_alter_table("approvals") as batch:
        batch.alter_column("valid_until", existing_type=sa.Date, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("valid_until")
    with op.batch_alter_table("courses") as batch:
        batch.drop_column("delete_source")
