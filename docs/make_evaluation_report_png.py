"""Screenshot the top of an evaluation report for the README (docs/evaluation-report.png).

Run after ``riskstrat evaluate`` (or the walkthrough notebook), on the report it wrote.
Photographs ``report.html`` in headless Chromium 1280 pixels wide and keeps the top ``--height``
pixels (the verdict, the summary, what the numbers show and the design), in 256 colours so the file
stays small. The README's picture is the demo's emergency-admission model, version 1::

    riskstrat demo && python docs/make_evaluation_report_png.py \
        riskstrat-output/evaluations/riskstrat-emergency-admission-v1-2025-11-01/report.html
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from riskstrat.scoring.listpage import chromium


def main() -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="An evaluation's report.html.")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/evaluation-report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1560)
    args = parser.parse_args()
    if not args.report.is_file():
        raise SystemExit(f"{args.report}: no such report")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "page.png"
        chromium(args.report, width=args.width, height=args.height, screenshot=shot)
        image = Image.open(shot).convert("RGB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {args.report} at {args.width}x{args.height}, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
