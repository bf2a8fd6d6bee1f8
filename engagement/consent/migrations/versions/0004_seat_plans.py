"""Seat plans per room (consent by seat): the plan as JSON, see engagement.consent.seatplan.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seat_plans",
        sa.Column("room", sa.String(64), primary_key=True),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("seat_plans")
