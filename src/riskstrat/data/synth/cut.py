"""An earlier extract cut from a later one: the data set as it stood on an earlier date.

A monthly refresh of real data holds the same records up to the last extract's end, plus what
happened since. :func:`cut_tables` goes the other way: from a longer history it keeps what was
known on ``extract_end``:

- events dated after ``extract_end`` are removed (each table's ``event_date``: admissions, A&E
  arrivals, appointments, contacts, diagnoses, prescriptions, social-care starts);
- an end that falls after it (a discharge, the end of a care package, of a registration) is
  blanked: on that day the stay, the package or the registration was still open;
- deaths after it are removed; people born or registered after it are not in the data yet.

For the synthetic population this is exact (the generator simulates forward month by month, so
its first years do not depend on how many follow; it has no late-arriving records): ``riskstrat
synth --extract-end DATE`` writes the extract that a run stopping on ``DATE`` would have had, and
the same command without it the later extract, with exactly the same records up to ``DATE``. On
real data it is an approximation (real extracts are revised: late records, corrected codes). A
spell still open on the cut keeps its recorded cost.

>>> from riskstrat.data.synth import generate_population
>>> later = generate_population(300, start="2021-01-01", years=3, seed=1, truth_dates=[]).tables
>>> earlier = cut_tables(later, extract_end="2022-12-31")
>>> bool((earlier["gp_contacts"]["contact_date"] <= "2022-12-31").all())
True
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from riskstrat.errors import InvalidInputError
from riskstrat.data.io import atomic_path, canonical_to_arrow, dataset_metadata, read_raw_tables
from riskstrat.data.schema import TABLES

__all__ = ["cut_data_dir", "cut_tables", "cut_truth"]


def cut_tables(tables: dict[str, pd.DataFrame], *, extract_end) -> dict[str, pd.DataFrame]:
    """The canonical ``tables`` as an extract ending on ``extract_end`` would hold them (see the module)."""
    end = pd.Timestamp(extract_end).normalize()
    out = {}
    for name, df in tables.items():
        table = TABLES[name]
        if name == "persons":
            arrived = ~(df["birth_date"] > end)
            if "registration_start" in df:
                arrived &= ~(df["registration_start"] > end)
            df = df.loc[arrived].copy()
        elif table.event_date is not None:
            df = df.loc[~(df[table.event_date] > end)].copy()
        else:
            df = df.copy()
        # Every other date after the cut (an end or a death) was not known yet: still open, still alive.
        for column in table.date_columns:
            if column in df and column not in (table.event_date, "birth_date", "registration_start"):
                df.loc[df[column] > end, column] = pd.NaT
        out[name] = df.reset_index(drop=True)
    return out


def cut_data_dir(data_dir, out_dir, *, extract_end) -> dict:
    """Write the canonical data folder ``data_dir`` cut at ``extract_end`` (:func:`cut_tables`) to
    ``out_dir``, atomically: the tables as Parquet, ``dataset.json`` with ``extract_end`` updated
    (and ``cut_from``: the longer extract's end), and the ground truth of the index dates whose
    12-month horizon the cut still covers. Returns the new ``dataset.json``.

    Refuses a cut date outside the data (on or after its end, or before its start).
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    meta = dataset_metadata(data_dir)
    end = pd.Timestamp(extract_end).normalize()
    if meta.get("extract_end") and end >= pd.Timestamp(meta["extract_end"]):
        raise InvalidInputError(f"cut date {end.date()} is not before the end of {data_dir} ({meta['extract_end']})")
    if meta.get("start") and end < pd.Timestamp(meta["start"]):
        raise InvalidInputError(f"cut date {end.date()} is before the start of {data_dir} ({meta['start']})")
    raw, _ = read_raw_tables(data_dir)
    tables = cut_tables(raw, extract_end=end)
    truth_file = data_dir / "ground_truth" / "truth.parquet"
    truth = cut_truth(pd.read_parquet(truth_file), extract_end=end) if truth_file.exists() else None
    new_meta = {**meta, "extract_end": str(end.date()), "cut_from": meta.get("extract_end"),
                "row_counts": {name: len(df) for name, df in tables.items()},
                "truth_dates": sorted({str(pd.Timestamp(d).date()) for d in truth["index_date"]})
                if truth is not None and len(truth) else []}
    _write(tables, out_dir, meta=new_meta, truth=truth)
    return new_meta


def cut_truth(truth: pd.DataFrame, *, extract_end) -> pd.DataFrame:
    """The ground truth of the index dates whose 12-month horizon an extract ending ``extract_end`` covers."""
    dates = pd.to_datetime(truth["index_date"])
    return truth.loc[(dates + pd.DateOffset(months=12) - pd.Timedelta(days=1)) <= pd.Timestamp(extract_end)]


def _write(tables: dict[str, pd.DataFrame], out_dir: Path, *, meta: dict, truth: pd.DataFrame | None) -> None:
    import json

    import pyarrow.parquet as pq

    with atomic_path(out_dir, directory=True, kind="data set") as tmp:
        for name, df in tables.items():
            pq.write_table(canonical_to_arrow(name, df), tmp / f"{name}.parquet", compression="zstd")
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        if truth is not None and len(truth):
            (tmp / "ground_truth").mkdir()
            truth.to_parquet(tmp / "ground_truth" / "truth.parquet", index=False)
