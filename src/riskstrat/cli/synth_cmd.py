"""`riskstrat synth`: generate the built-in synthetic linked population."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from riskstrat.cli.app import app, out, parse_date
from riskstrat.cli.progress import progress_bar


@app.command()
def synth(
    people: int = typer.Option(20_000, "--people", "-n", min=100, help="Number of people to generate."),
    start: str = typer.Option("2021-11-01", help="First day of the extract (first of a month), YYYY-MM-DD."),
    years: int = typer.Option(5, min=3, max=30, help="Years of records to generate."),
    seed: int = typer.Option(42, help="Random seed: the same seed gives the same data."),
    out_dir: Path = typer.Option(Path("riskstrat-data/synthetic"), "--out", help="Folder to write (replaced as a whole)."),
    truth_dates: str = typer.Option(
        "", help="Comma-separated index dates (firsts of months) to write the true 12-month risks for; "
                 "default: yearly, back from the last date with a full year of follow-up."),
    futures: int = typer.Option(12, min=2, max=500, help="Simulated futures per person for the ground truth."),
    chunk_size: int = typer.Option(50_000, min=1000, help="People generated per chunk (bounds memory)."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1,
        help="Worker processes that generate chunks side by side (this process writes them in order): the same "
             "files, byte for byte, as --jobs 1. Each worker needs about the memory of a --jobs 1 run (it makes "
             "one chunk while handing the last over); more workers than free cores do not help."),
    extract_end: str = typer.Option(
        None, "--extract-end", help="Write the extract as it stood on this date (YYYY-MM-DD, before the end of the "
                                    "years simulated): the same command without it writes the later extract, with "
                                    "exactly the same records up to this date (for `riskstrat monitor`)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Generate a realistic synthetic linked population (persons, hospital, A&E, outpatients, GP,
    long-term conditions, prescriptions, social care) with its ground truth kept apart.

    Example: riskstrat synth --people 20000 --seed 42 --out riskstrat-data/synthetic

    Example (5 million people, 2 cores): riskstrat synth --people 5000000 --seed 7 --futures 2 --jobs 2 --out big

    Example (an earlier extract of the same people): riskstrat synth --people 20000 --seed 42
    --extract-end 2025-10-31 --out riskstrat-data/synthetic-2025-10
    """
    from riskstrat.pipelines.commands import write_population

    parse_date(start, option="--start")
    parse_date(extract_end, option="--extract-end")
    dates = [d.strip() for d in truth_dates.split(",") if d.strip()] or None
    for d in dates or []:
        parse_date(d, option="--truth-dates")
    t0 = time.perf_counter()
    with progress_bar("generating people", quiet=quiet) as update:
        meta = write_population(out_dir, people, start=start, years=years, seed=seed, truth_dates=dates,
                                n_futures=futures, chunk_size=chunk_size, extract_end=extract_end,
                                progress=update, jobs=jobs)
    if not quiet:
        out.print(f"Wrote {people:,} people, {meta['start']} to {meta['extract_end']}, to {out_dir} "
                  f"in {time.perf_counter() - t0:.1f}s")
        for name, n in meta["row_counts"].items():
            out.print(f"  {name:<26} {n:>12,} rows")
        out.print(f"  ground truth for index dates {', '.join(meta['truth_dates']) or '(none)'} in "
                  f"{out_dir / 'ground_truth'} (never read by training)")
