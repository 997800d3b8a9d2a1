"""Are the month's lists the same, byte for byte, before and after a change?

Runs ``riskstrat demo`` (a synthetic population, training, evaluation and the month's lists) with
the code of a base revision and with the code of this checkout, each in its own empty folder, and
compares every file the month published (``riskstrat-output/lists/YYYY-MM/``): the lists, pages,
workbooks, summaries and the population file.

The run marker and the audit trail record the run itself rather than its result (its id, its time)
and differ between any two runs, even of the same code: they are listed as not compared, with the
reason. Everything else must be equal byte for byte, except that a page or workbook names the MLflow
runs its models came from (random 32-hex run ids): a file that differs only there is reported "equal
but run ids" (workbooks are compared member by member). The manifest is compared too, with the run
ids masked, the run's folder named alike, and the hashes of the files that differ only by run ids
left out (those files are compared themselves).

    python benchmarks/same_lists.py --base c042a56            # the commit before the change
    python benchmarks/same_lists.py --base HEAD~3 --people 3000 --json /tmp/same.json

Exit status 0 when every compared file is equal, 1 otherwise. Writes JSON (``--json``) with one
entry per file. It takes two demo runs: about 2 minutes at 3,000 people on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What a run writes about itself: differs between two runs of the same code and data.
RUN_RECORDS = {
    "audit.jsonl": "the audit trail of the run (times, run ids)",
    ".riskstrat-run": "the marker naming the run that published the month",
}
RUN_ID = re.compile(rb"\b[0-9a-f]{32}\b")


def _members(path: Path) -> dict[str, bytes]:
    """A file's bytes, or a workbook's (zip) members, with MLflow run ids masked."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as zf:
            return {n: RUN_ID.sub(b"<run>", zf.read(n)) for n in sorted(zf.namelist())}
    return {"": RUN_ID.sub(b"<run>", path.read_bytes())}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_demo(src: Path, folder: Path, *, people: int, seed: int) -> Path:
    """``riskstrat demo`` with the package at ``src``, in ``folder``; returns the published month."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, "-m", "riskstrat.cli", "demo", "--people", str(people), "--seed", str(seed),
                    "--quiet"], cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
    months = sorted(p for p in (folder / "riskstrat-output").rglob("*")
                    if p.is_dir() and re.fullmatch(r"\d{4}-\d{2}", p.name))
    if not months:
        raise SystemExit(f"no published month under {folder / 'riskstrat-output'}")
    return months[-1]


def _manifest(path: Path, run_folder: Path, *, leave_out: set[str]) -> dict:
    """A manifest as data, with what differs between any two runs made alike (run ids, the run's
    folder) and the hashes of ``leave_out`` (files compared with run ids masked) left out."""
    text = path.read_text(encoding="utf-8").replace(str(run_folder), "<run folder>")
    manifest = json.loads(RUN_ID.sub(b"<run>", text.encode()).decode())
    if isinstance(manifest.get("files"), dict):
        manifest["files"] = {k: v for k, v in manifest["files"].items() if k not in leave_out}
    return manifest


def compare(before: Path, after: Path, *, folders: tuple[Path, Path] | None = None) -> list[dict]:
    """One entry per file in either month: equal, different, only in one, or not compared (and why).
    ``folders``: the folders the two runs ran in (default: three levels above each month)."""
    folders = folders or (_run_folder(before), _run_folder(after))
    names = sorted({p.relative_to(before).as_posix() for p in before.rglob("*") if p.is_file()}
                   | {p.relative_to(after).as_posix() for p in after.rglob("*") if p.is_file()})
    rows = []
    for name in names:
        a, b = before / name, after / name
        why = RUN_RECORDS.get(Path(name).name)
        if why:
            rows.append({"file": name, "result": "not compared", "why": why})
        elif not a.exists() or not b.exists():
            rows.append({"file": name, "result": "only after" if b.exists() else "only before"})
        else:
            if _digest(a) == _digest(b):
                result = "equal"
            else:
                result = "equal but run ids" if _members(a) == _members(b) else "different"
            rows.append({"file": name, "result": result, "bytes": b.stat().st_size})
    masked = {r["file"] for r in rows if r["result"] == "equal but run ids"}
    for row in rows:
        if row["file"] == MANIFEST and row["result"] == "different":
            same = (_manifest(before / MANIFEST, folders[0], leave_out=masked)
                    == _manifest(after / MANIFEST, folders[1], leave_out=masked))
            row["result"] = "equal but run ids" if same else "different"
    return rows


MANIFEST = "manifest.json"


def _run_folder(month: Path) -> Path:
    """The folder the demo ran in (``<folder>/riskstrat-output/lists/YYYY-MM``)."""
    return month.parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision to compare against (e.g. a commit)")
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="write the comparison here")
    parser.add_argument("--keep", type=Path, help="copy both published months here (to look at a difference)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="same-lists-") as tmp:
        tmp = Path(tmp)
        base_tree = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.base],
                       check=True)
        try:
            print(f"demo with {args.base} ...", flush=True)
            before = run_demo(base_tree / "src", tmp / "run-base", people=args.people, seed=args.seed)
            print("demo with this checkout ...", flush=True)
            after = run_demo(ROOT / "src", tmp / "run-head", people=args.people, seed=args.seed)
            rows = compare(before, after)
            if args.keep:
                shutil.copytree(before, args.keep / "before", dirs_exist_ok=True)
                shutil.copytree(after, args.keep / "after", dirs_exist_ok=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["result"]] = counts.get(row["result"], 0) + 1
        if row["result"] != "equal":
            print(f"  {row['result']:>13}  {row['file']}" + (f"  ({row['why']})" if "why" in row else ""))
    print(f"month {after.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "people": args.people, "seed": args.seed,
                                         "month": after.name, "counts": counts, "files": rows}, indent=2) + "\n")
    return 0 if set(counts) <= {"equal", "equal but run ids", "not compared"} else 1


if __name__ == "__main__":
    raise SystemExit(main())
