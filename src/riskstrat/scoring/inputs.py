"""What a scoring run reads besides the records and the models: opt-outs, practices' look-ups and
page settings, and the months already published (verified before they are used).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from riskstrat.quiet import no_stage
from riskstrat.data.io import read_user_csv
from riskstrat.data.privacy import (OptOutIds, ReidentificationLookupError, canonical_ids,
                                    read_opt_outs as read_opt_out_file, read_reidentification_lookup)
from riskstrat.errors import InvalidInputError
from riskstrat.scoring import lists
from riskstrat.scoring import publish
from riskstrat.scoring.published import MANIFEST, ManifestError, PublishedMonthError, read_manifest, read_population

__all__ = ["PREVIOUS_COLUMNS", "as_in_data", "month_options", "page_words", "previous_month", "published_population",
           "read_opt_outs", "read_reidentification"]

Stage = Callable[[str], None]


def read_opt_outs(path, *, allow_empty: bool = False):
    """Pseudonymised ids from an opt-out file, in canonical form, with their line numbers
    (:func:`riskstrat.data.privacy.read_opt_outs`); none (an empty :class:`~riskstrat.data.privacy.OptOutIds`)
    when ``path`` is None."""
    return read_opt_out_file(path, allow_empty=allow_empty) if path else OptOutIds()


def read_reidentification(folder, practices) -> dict[str, pd.DataFrame]:
    """Practice-supplied lookups ``<practice_id>.csv`` (person_id, local_id) for the practices listed
    (:func:`riskstrat.data.privacy.read_reidentification_lookup`: every refusal names the file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReidentificationLookupError(
            f"{folder}: re-identification folder not found{' (it is a file)' if folder.exists() else ''}; set "
            f"reidentify_dir to the folder holding the practices' <practice_id>.csv look-ups, or remove the setting")
    lookups = {}
    for pid in practices:
        path = folder / f"{pid}.csv"
        if path.exists():
            lookups[str(pid)] = read_reidentification_lookup(path)
    return lookups


def as_in_data(ids: pd.Series, lookup: dict[str, str]) -> tuple[pd.Series, int]:
    """Outside ids rewritten as the data write them (canonical match), and how many matched nobody."""
    mapped = canonical_ids(ids).map(lookup)
    return mapped.fillna(ids.astype(object)).astype(object), int(mapped.isna().sum())


def page_words(lists_cfg, *, outcome: Mapping, groups) -> lists.PageWords:
    """What the practice pages say beyond the numbers: the outcome (``outcome``: the manifest's
    ``words`` and ``horizon_words``), the priority ``groups``, practice names, how to find a person,
    whom to ask, what to do."""
    names = dict(lists_cfg.practice_names)
    if lists_cfg.practice_names_file is not None:
        table = read_user_csv(lists_cfg.practice_names_file, what="practice names")
        if not {"practice_id", "name"} <= set(table.columns):
            raise InvalidInputError(f"{lists_cfg.practice_names_file}: needs columns practice_id and name, "
                             f"found {list(table.columns)}")
        names = {**dict(zip(table["practice_id"].str.strip(), table["name"].str.strip())), **names}
    return lists.PageWords(outcome_words=outcome["words"], horizon_words=outcome["horizon_words"], groups=groups,
                           practice_names=names, find_person=lists_cfg.find_person or lists.DEFAULT_FIND_PERSON,
                           contact=lists_cfg.contact or lists.DEFAULT_CONTACT,
                           next_steps=lists_cfg.next_steps or lists.DEFAULT_NEXT_STEPS,
                           group_names=dict(lists_cfg.page_group_names))


def unset_page_words(lists_cfg) -> list[str]:
    """Warnings for the page settings an organisation must fill in and has not (``lists.contact``,
    ``lists.find_person``): without them the pages fall back on words that point at each other."""
    missing = []
    if not lists_cfg.contact:
        missing.append(f"WARNING: lists.contact is not set, so every page says 'Who to ask: {lists.DEFAULT_CONTACT}'. "
                       "Set it to the team that answers questions and how to reach them (configs/scoring.yaml).")
    if not lists_cfg.find_person:
        missing.append("WARNING: lists.find_person is not set, so the pages tell practices to ask the team under "
                       "'Who to ask' how to find each person. Set it to where a practice searches the pseudonym "
                       "(configs/scoring.yaml), or give reidentify_dir lookups.")
    return missing


def month_options(cfg) -> lists.MonthOptions:
    """How the month is written (small-number suppression, workbooks, writers, replacing) from the scoring config."""
    return lists.MonthOptions(suppress_below=cfg.lists.suppress_below, round_counts_to=cfg.lists.round_counts_to,
                              workbooks=cfg.lists.workbooks, workers=cfg.lists.write_workers,
                              replace=cfg.replace_existing)


# What this month's changes read of last month's population (holdout: when it was kept).
PREVIOUS_COLUMNS = ("person_id", "practice_id", "practice_rank", "tier")


def _unverified(exc: Exception, allow: bool, *, what: str, why: str, month: str, treated: str, stage: Stage) -> dict:
    """A published month that cannot be verified: refused (``exc``'s type, saying what to do) unless
    ``allow``; then a loud warning to ``stage`` and ``{"month", "problem"}`` for the manifest."""
    if not allow:
        raise type(exc)(
            f"{what} cannot be verified, so {why}: {exc}. Nothing was published. To publish {month} treating "
            f"{treated} (recorded in the manifest), set allow_unverified_previous_month=true "
            f"(--allow-unverified-previous-month)") from exc
    stage(f"WARNING: {what} cannot be verified and is treated as absent, as allow_unverified_previous_month asks: "
          f"{treated}. {exc}")
    return {"problem": str(exc)}


def previous_month(output_dir, month: str, *, allow_unverified: bool = False,
                   stage: Stage = no_stage) -> tuple[str | None, pd.DataFrame | None, dict | None]:
    """The latest earlier month published in ``output_dir`` (every month link, or month folder of an
    earlier riskstrat, named YYYY-MM, whatever it holds): ``(its name, its population, None)``, or
    ``(None, None, None)`` when there is none.

    Last month is verified before it is used (:func:`riskstrat.scoring.published.read_population`), read from
    the run folder :func:`riskstrat.scoring.publish.month_run` resolves (never through the month link
    again): its manifest must parse and be that month's, its ``population.parquet`` must be there,
    a regular file with the SHA-256 the manifest records and the columns :data:`PREVIOUS_COLUMNS`.
    A month with a file missing is not skipped for an older one: if it cannot be verified, the run
    is refused (:class:`riskstrat.scoring.published.PublishedMonthError`, saying what to restore or rescore)
    by default: a tampered month is something a person must look at. With ``allow_unverified`` the
    month is treated as absent instead (no changes since it, no population-shrink check against
    it): a loud warning goes to ``stage`` and the third value, ``{"month", "problem"}``, is for the
    manifest to record, so a bad month cannot block the lists for ever.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None, None, None
    # Through publish.month_run: a month link riskstrat did not make is refused, never read.
    earlier = publish.published_months(root, before=month)
    if not earlier:
        return None, None, None
    last, folder = earlier[-1]
    try:
        _, population = read_population(folder, month=last, columns=PREVIOUS_COLUMNS, optional=("holdout",))
    except PublishedMonthError as exc:
        problem = _unverified(exc, allow_unverified, what=f"last month ({last})", month=month,
                              why="this month's changes (new, left, tier moves) cannot be worked out from it",
                              treated=f"{last} as absent (everyone listed counts as new, and the population is not "
                                      f"compared with it)", stage=stage)
        return None, None, {"month": last, **problem}
    return last, population, None


def published_population(output_dir, month: str, *, allow_unverified: bool = False,
                          stage: Stage = no_stage) -> int | None:
    """How many people the month already published in ``output_dir`` scored (its manifest, read by
    :func:`riskstrat.scoring.published.read_manifest` from the run folder :func:`riskstrat.scoring.publish.month_run`
    resolves), or None when the month is not published. A manifest that cannot be believed, or
    lacks ``counts.scored``, is refused as :func:`previous_month` refuses last month: unless
    ``allow_unverified``, then a warning and None (no population-shrink check)."""
    if not Path(output_dir).is_dir():
        return None
    folder = publish.month_run(output_dir, month)
    if folder is None:
        return None
    try:
        manifest = read_manifest(folder / MANIFEST, month=month)
        counts = manifest.get("counts")
        scored = counts.get("scored") if isinstance(counts, dict) else None
        if not isinstance(scored, int) or isinstance(scored, bool) or scored < 0:
            raise ManifestError(f"{folder / MANIFEST} (month {month}) has no count of the people scored "
                                f"(counts.scored); rescore the month to publish it afresh")
    except PublishedMonthError as exc:
        _unverified(exc, allow_unverified, what=f"{month} as published", month=month,
                    why="this run's population cannot be compared with it",
                    treated=f"{month} as published as absent (the population is not compared with it)",
                    stage=stage)
        return None
    return scored
