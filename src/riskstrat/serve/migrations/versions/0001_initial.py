"""The worklist's first schema: accounts, sessions, months' list rows, statuses, opt-outs, the audit.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(300), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "user_practices",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("practice_id", sa.String(64), primary_key=True),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "months",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("population_sha256", sa.String(64), nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "list_rows",
        sa.Column("month", sa.String(7), primary_key=True),
        sa.Column("practice_id", sa.String(64), primary_key=True),
        sa.Column("pseudonym", sa.String(128), primary_key=True),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("new", sa.Boolean, nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("cells", sa.Text, nullable=False),
    )
    op.create_index("ix_list_rows_pseudonym", "list_rows", ["pseudonym"])
    op.create_table(
        "statuses",
        sa.Column("practice_id", sa.String(64), primary_key=True),
        sa.Column("pseudonym", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("next_review", sa.Date, nullable=True),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("note_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "status_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("practice_id", sa.String(64), nullable=False),
        sa.Column("pseudonym", sa.String(128), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("next_review", sa.Date, nullable=True),
        sa.Column("by", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_status_events_person", "status_events", ["practice_id", "pseudonym"])
    op.create_table(
        "opted_out",
        sa.Column("pseudonym", sa.String(128), primary_key=True),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "practice_settings",
        sa.Column("practice_id", sa.String(64), primary_key=True),
        sa.Column("hide_not_appropriate", sa.Boolean, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("practice_id", sa.String(64), nullable=True),
        sa.Column("pseudonym", sa.String(128), nullable=True),
        sa.Column("detail", sa.String(200), nullable=True),
    )
    # The audit is append-only in the database itself, not only in the application.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_no_{verb.lower()} BEFORE {verb} ON audit "
                       f"BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END")
    elif op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'the audit is append-only'; END $$")
        op.execute("CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                   "FOR EACH ROW EXECUTE FUNCTION audit_append_only()")


def downgrade() -> None:
    for table in ("audit", "practice_settings", "opted_out", "status_events", "statuses", "list_rows", "months",
                  "sessions", "user_practices", "users"):
        op.drop_table(table)
