"""The worklist's status history read for ``riskstrat monitor`` (read-only, never a note).

The worklist (``riskstrat serve``) keeps each status change in its ``status_events`` table (practice,
pseudonym, status, when; the note is kept elsewhere and is never read here). This module reads that
table with plain SQLAlchemy Core by name, so monitoring needs neither the web application nor its
migrations: it reads a SQLite file or a PostgreSQL database at the URL ``riskstrat serve --db`` was given.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from riskstrat.errors import RiskstratError

__all__ = ["WorklistDatabaseError", "read_status_events"]

COLUMNS = ["practice_id", "pseudonym", "status", "at"]


class WorklistDatabaseError(RiskstratError):
    """The worklist database cannot be read: the message names it and what to do."""


def read_status_events(url: str) -> pd.DataFrame:
    """Every status change the worklist at ``url`` recorded: practice_id, pseudonym, status, at (UTC)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        # SQLite would create an empty file: a mistyped path must not read as "nobody was contacted".
        raise WorklistDatabaseError(f"{url}: no such worklist database; give the --db URL `riskstrat serve` used")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            table = sa.Table("status_events", sa.MetaData(), autoload_with=connection)
            query = sa.select(*(table.c[c] for c in COLUMNS))
            frame = pd.DataFrame(connection.execute(query).all(), columns=COLUMNS)
    except (sa.exc.NoSuchTableError, sa.exc.OperationalError, KeyError) as exc:
        raise WorklistDatabaseError(
            f"{engine.url.render_as_string(hide_password=True)} is not a worklist database riskstrat can read "
            f"({type(exc).__name__}: {exc}); give the --db URL `riskstrat serve` used") from None
    finally:
        engine.dispose()
    frame["at"] = pd.to_datetime(frame["at"])
    for column in ("practice_id", "pseudonym", "status"):
        frame[column] = frame[column].astype(str)
    return frame
