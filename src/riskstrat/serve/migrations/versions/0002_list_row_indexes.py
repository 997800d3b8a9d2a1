"""Indexes for a practice's pages at scale: its months (practice, month) and a person's rows (practice, pseudonym).

Without them, every list view scanned all months' rows to find the practice's months (the primary
key leads with the month), and the person page and status update found a person's rows through the
pseudonym alone.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_list_rows_practice_month", "list_rows", ["practice_id", "month"])
    op.create_index("ix_list_rows_practice_person", "list_rows", ["practice_id", "pseudonym"])


def downgrade() -> None:
    op.drop_index("ix_list_rows_practice_person", "list_rows")
    op.drop_index("ix_list_rows_practice_month", "list_rows")
