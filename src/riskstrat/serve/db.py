"""The worklist's database: its tables, the engine (SQLite in WAL mode, or PostgreSQL by URL) and the
migrations shipped in this package (``serve/migrations``, upgraded to head at start-up).

What it holds: accounts (password hashes, never passwords), sessions, the published months' list
rows (pseudonyms and what the practice page shows, never a local ID), statuses with their notes and
next-review dates, opted-out pseudonyms, and the audit (append-only: the migration adds triggers that
refuse an update or a delete, and the application has no path that changes a row).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.orm import Session as OrmSession

from riskstrat.errors import RiskstratError

__all__ = ["AuditRow", "Base", "ListRow", "LoadedMonth", "OptedOut", "PracticeSetting", "Session", "Status",
           "StatusEvent", "User", "UserPractice", "ServeDatabaseError", "make_engine", "open_database",
           "upgrade", "utcnow"]

MIGRATIONS = Path(__file__).with_name("migrations")

# The statuses a person on the worklist can have, in the order the page offers them, and the reasons
# for "not appropriate".
STATUSES = {"to_review": "To review", "reviewed_mdt": "Reviewed at MDT", "contacted": "Contacted",
            "enrolled": "Enrolled in case management", "declined": "Declined", "not_appropriate": "Not appropriate"}
NOT_APPROPRIATE_REASONS = {"palliative": "Palliative", "care_home": "Care home", "case_managed": "Already case-managed",
                           "moved": "Moved", "died": "Died", "other": "Other"}
ROLES = ("coordinator", "data_team", "admin")


class ServeDatabaseError(RiskstratError):
    """The worklist's database cannot be opened or migrated: the message names it and what to do."""


def utcnow() -> dt.datetime:
    """Now, in UTC without a zone (what both SQLite and PostgreSQL store the same way)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    # scrypt: "scrypt$n$r$p$salt_hex$hash_hex" (the parameters are stored with each hash)
    password_hash: Mapped[str] = mapped_column(sa.String(300))
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UserPractice(Base):
    __tablename__ = "user_practices"
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    practice_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)


class Session(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # a random token, sent signed in the cookie
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]


class LoadedMonth(Base):
    __tablename__ = "months"
    month: Mapped[str] = mapped_column(sa.String(7), primary_key=True)
    as_of: Mapped[str] = mapped_column(sa.String(10))
    population_sha256: Mapped[str] = mapped_column(sa.String(64))  # a republished month is loaded again
    columns: Mapped[str] = mapped_column(sa.Text)  # the list's columns, JSON, in the page's order
    loaded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListRow(Base):
    __tablename__ = "list_rows"
    month: Mapped[str] = mapped_column(sa.String(7), primary_key=True)
    practice_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    rank: Mapped[int]
    tier: Mapped[str] = mapped_column(sa.String(32))
    groups: Mapped[str] = mapped_column(sa.Text, default="")
    new: Mapped[bool] = mapped_column(default=False)
    risk: Mapped[str] = mapped_column(sa.String(16), default="")
    cells: Mapped[str] = mapped_column(sa.Text)  # the list.csv row as JSON (reasons and facts as the page shows)

    __table_args__ = (sa.Index("ix_list_rows_pseudonym", "pseudonym"),
                      sa.Index("ix_list_rows_practice_month", "practice_id", "month"),
                      sa.Index("ix_list_rows_practice_person", "practice_id", "pseudonym"))


class Status(Base):
    """A person's current status at a practice: keyed by pseudonym, so it carries over to later months."""

    __tablename__ = "statuses"
    practice_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.Text)
    next_review: Mapped[dt.date | None]
    updated_by: Mapped[str] = mapped_column(sa.String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    note_at: Mapped[dt.datetime | None]  # when the note was written (note retention counts from here)


class StatusEvent(Base):
    """Each status change (without the note), for the person's history."""

    __tablename__ = "status_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    practice_id: Mapped[str] = mapped_column(sa.String(64))
    pseudonym: Mapped[str] = mapped_column(sa.String(128))
    month: Mapped[str] = mapped_column(sa.String(7))
    status: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    next_review: Mapped[dt.date | None]
    by: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index("ix_status_events_person", "practice_id", "pseudonym"),)


class OptedOut(Base):
    __tablename__ = "opted_out"
    pseudonym: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PracticeSetting(Base):
    __tablename__ = "practice_settings"
    practice_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    hide_not_appropriate: Mapped[bool] = mapped_column(default=False)


class AuditRow(Base):
    """Who did what, when, at which practice, to whom: append-only (triggers refuse updates and deletes)."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    username: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(32))
    practice_id: Mapped[str | None] = mapped_column(sa.String(64))
    pseudonym: Mapped[str | None] = mapped_column(sa.String(128))
    detail: Mapped[str | None] = mapped_column(sa.String(200))  # never a note


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer and a crash loses at most the transaction in flight;
    # foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path.db`` or ``postgresql+psycopg://...``); SQLite in WAL mode."""
    try:
        engine = sa.create_engine(url, future=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ServeDatabaseError(f"the database URL cannot be used ({exc}); give sqlite:///worklist.db or a "
                                 f"postgresql+psycopg:// URL (install its driver)") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def upgrade(engine: Engine) -> None:
    """Migrate the database to the newest schema this package ships (Alembic, programmatically)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "head")
        except sa.exc.OperationalError as exc:
            raise ServeDatabaseError(f"the worklist database {engine.url.render_as_string(hide_password=True)} "
                                     f"cannot be migrated ({exc.orig}); check it is writable") from None


@contextlib.contextmanager
def open_database(url: str) -> Iterator[OrmSession]:
    """A session on the database at ``url``, migrated to head first."""
    engine = make_engine(url)
    upgrade(engine)
    try:
        with OrmSession(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()
