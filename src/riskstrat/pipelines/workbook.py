"""``riskstrat workbook``: a practice's workbook from a published month (the run may have left it out).

>>> from riskstrat.pipelines.workbook import month_workbook                          # doctest: +SKIP
>>> data = month_workbook("riskstrat-output/lists", month="2026-11", practice="P81000")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from riskstrat.scoring.lists import published_workbook
from riskstrat.scoring.publish import MONTH_NAME
from riskstrat.scoring.published import MANIFEST, PublishedMonthError, read_manifest

__all__ = ["month_workbook"]


def month_workbook(lists_dir: str | Path, *, month: str, practice: str) -> bytes:
    """``practice``'s list.xlsx for ``month`` (YYYY-MM) under ``lists_dir``, the run's bytes
    (:func:`riskstrat.scoring.lists.published_workbook`: verified against the month's manifest)."""
    month_dir = Path(lists_dir) / month
    if not MONTH_NAME.fullmatch(month) or not (month_dir / MANIFEST).is_file():
        raise PublishedMonthError(f"{month_dir} is not a published month (no {MANIFEST}): give the lists folder "
                                  f"`riskstrat score` publishes into (--lists) and a month it holds, as YYYY-MM")
    return published_workbook(month_dir, practice, manifest=read_manifest(month_dir / MANIFEST, month=month))
