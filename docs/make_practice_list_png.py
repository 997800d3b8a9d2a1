"""Screenshot a practice's case-finding page for the README (docs/practice-list.png).

Run after ``riskstrat demo --people 3000`` (or any ``riskstrat score``), from the folder it wrote::

    python docs/make_practice_list_png.py riskstrat-output/lists/2026-11 docs/practice-list.png

Takes the first practice's ``list.html`` and photographs it in headless Chromium at 1280x800 (a
laptop screen); ``--width``/``--height`` choose another size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from riskstrat.scoring.listpage import chromium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("month", type=Path, help="A month folder written by riskstrat score (YYYY-MM).")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/practice-list.png"))
    parser.add_argument("--practice", help="Practice code (default: the first).")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args()
    practices = sorted(p.name for p in (args.month / "practices").iterdir() if (p / "list.html").exists())
    if not practices:
        raise SystemExit(f"{args.month}: no practices/<code>/list.html here")
    practice = args.practice or practices[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chromium(args.month / "practices" / practice / "list.html", width=args.width, height=args.height,
             screenshot=args.out.resolve())
    print(f"{args.out}: practice {practice} at {args.width}x{args.height}")


if __name__ == "__main__":
    main()
