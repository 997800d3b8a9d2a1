"""Make a data set K times larger from an existing riskstrat data folder: K regions, each a copy of it.

Copy k (0-based) keeps every row; person ids become ``r<k>`` and the id's last 14 characters (copy 0 keeps
its ids; a clash between two ids that differ only in their first two characters is refused by validation),
record ids get a ``-k`` suffix, and practice ids a region prefix ``R<k>-`` (copy 0 unchanged), so practices
keep their size and every person and practice is distinct. Nothing else changes: the same events, dates and
costs, so every copy's people get the same features and risks as the original's.

It is for scale benchmarks only (``riskstrat synth`` of 5M people takes hours of one core here; this
takes minutes): the copies add no new variety, and the ground truth is not carried over.

    .venv/bin/python benchmarks/replicate_data.py --data /tmp/bench/synth-1m --times 5 --out /tmp/bench/synth-5m

Writes Parquet (zstd) into a temporary folder beside ``--out`` and renames it into place when complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _id(k: int) -> str:
    # 'r<k>' and the id's last characters: distinct from copy 0's ids (hex digits only) and between copies
    return "person_id" if k == 0 else f"'r{k}' || substr(person_id, 3)"


def replicate(data: Path, out: Path, times: int, *, threads: int = 2, memory_limit: str = "3GB",
              resume: Path | None = None) -> dict:
    import duckdb
    import pyarrow.parquet as pq

    out = out.resolve()
    tmp = resume or Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    # DuckDB's default limit is 80% of the machine; a 400M-row COPY took 18 GiB with it
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET temp_directory = '{tmp}/.spill'")
    counts = {}
    try:
        for path in sorted(data.glob("*.parquet")):
            if (tmp / path.name).exists():  # written whole by an earlier run (--resume)
                counts[path.stem] = pq.read_metadata(tmp / path.name).num_rows
                continue
            names = pq.read_schema(path).names
            parts = []
            for k in range(times):
                cols = []
                for name in names:
                    if name == "person_id":
                        cols.append(f"{_id(k)} AS person_id")
                    elif name == "record_id" and k:
                        cols.append(f"CASE WHEN record_id IS NULL THEN NULL ELSE record_id || '-{k}' END AS record_id")
                    elif name == "practice_id" and k:
                        cols.append(f"CASE WHEN practice_id IS NULL OR trim(practice_id) = '' THEN practice_id "
                                    f"ELSE 'R{k}-' || practice_id END AS practice_id")
                    else:
                        cols.append(f'"{name}"')
                parts.append(f"SELECT {', '.join(cols)} FROM read_parquet('{path}')")
            started = time.perf_counter()
            part = tmp / f"{path.name}.part"
            con.execute(f"COPY ({' UNION ALL '.join(parts)}) TO '{part}' "
                        f"(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)")
            part.rename(tmp / path.name)
            counts[path.stem] = pq.read_metadata(tmp / path.name).num_rows
            print(f"{path.name}: {counts[path.stem]:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
        meta = json.loads((data / "dataset.json").read_text()) if (data / "dataset.json").exists() else {}
        meta.update({"n_people": counts.get("persons"), "row_counts": counts,
                     "replicated_from": str(data), "replicated_times": times})
        meta.pop("truth_dates", None)
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(tmp / ".spill", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a riskstrat data folder (Parquet)")
    parser.add_argument("--times", type=int, default=5, help="how many copies (regions)")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (replaced as a whole)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="3GB", help="DuckDB's memory limit (it spills beyond it)")
    parser.add_argument("--resume", type=Path, default=None,
                        help="the temporary folder of an interrupted run: tables already written there are kept")
    args = parser.parse_args()
    if args.times < 1:
        parser.error("--times must be at least 1")
    started = time.perf_counter()
    counts = replicate(args.data, args.out, args.times, threads=args.threads, memory_limit=args.memory_limit,
                       resume=args.resume)
    print(f"{args.out}: {counts.get('persons', 0):,} people, {sum(counts.values()):,} rows in "
          f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
