"""What an import produced and which outcomes the imported data can support.

:func:`supported_outcomes` is a pure function of the canonical tables; :func:`import_report` puts it
together with the reader's summary and validation's counts into the :data:`IMPORT_REPORT` file that
:func:`riskstrat.pipelines.imports.import_dataset` writes beside the tables, and :func:`dataset_metadata`
makes ``dataset.json``. Both are deterministic: the same input gives the same bytes (no clock time).

>>> import pandas as pd
>>> persons = pd.DataFrame({"person_id": ["a"], "death_date": [pd.NaT]})
>>> supported_outcomes({"persons": persons})["death"]["supported"]
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

import riskstrat
from riskstrat.data.records import LinkedRecords
from riskstrat.data.schema import AE_DEPARTMENT_TYPES, AE_UNPLANNED_DEPARTMENT_TYPES, COST_COLUMNS, SCHEMA_VERSION
from riskstrat.data.validate import ValidationIssue, ValidationReport
from riskstrat.features.clinical import eligible_persons
from riskstrat.modeling.config import CohortConfig, GuardsConfig, SplitConfig
from riskstrat.modeling.guards import people_needed
from riskstrat.modeling.split import suggest_index_dates
from riskstrat.outcomes import parse_outcome

if TYPE_CHECKING:
    from riskstrat.data.readers import ImportSummary

__all__ = ["IMPORT_REPORT", "OUTCOMES", "MIN_EVENTS", "MIN_EMERGENCY_SHARE", "MAX_UNREADABLE_COST_SHARE",
           "supported_outcomes", "horizon_support", "ae_department_counts",
           "import_report", "dataset_metadata", "format_import_report", "unreadable_cost_issues"]

# The report's file name in an imported folder (beside the tables and dataset.json).
IMPORT_REPORT = "import_report.json"

OUTCOMES = ("emergency_admission", "unplanned_hospital_use", "death", "high_cost", "social_care_entry")
# About 100 events are needed to validate a prediction model with stable calibration (Riley et al.,
# BMJ 2020; Collins et al. 2016): fewer is reported as "few events", not as support.
MIN_EVENTS = 100
# Below this share of spells recorded as emergency, the admission method is taken as not recorded
# (in England about 40% of spells are emergencies).
MIN_EMERGENCY_SHARE = 0.05
# Above this share of a cost column's present values unreadable, the import warns (validation-level):
# the costs read are then too incomplete to sum quietly.
MAX_UNREADABLE_COST_SHARE = 0.05


def _outcome(supported: bool, events: int, message: str) -> dict:
    return {"supported": bool(supported), "events": int(events), "message": message}


def _rows(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    df = tables.get(name)
    return df if df is not None and len(df) else None


def supported_outcomes(tables: dict[str, pd.DataFrame], *, min_events: int = MIN_EVENTS,
                       min_emergency_share: float = MIN_EMERGENCY_SHARE, extract_end=None, data_start=None,
                       split=None, guards=None) -> dict[str, dict]:
    """For each outcome in :data:`OUTCOMES`: ``supported``, ``events`` in the data and a ``message``.

    ``events`` are counted over the whole extract, which says whether the data record the outcome
    (``recorded``). Given ``extract_end`` (and tables with what eligibility reads), each outcome
    also gets ``horizon`` (:func:`horizon_support`: the events in one horizon at the latest date the
    data can test, the rate, the people the guard minimums need), and is ``supported`` only when
    the data record it and the people now meet every minimum there; otherwise the message says
    "too small" with the people needed.
    ``emergency_admission`` needs emergency spells: when they are fewer than ``min_events`` or under
    ``min_emergency_share`` of the spells while A&E attendances exist, the admission method is
    taken as mostly not recorded and ``unplanned_hospital_use`` is recommended instead.
    ``unplanned_hospital_use`` counts the spells it counts by default (emergency or of unknown method: not
    recorded as planned) plus the A&E attendances of the department types it counts by default
    (emergency, single-specialty, unknown; urgent care and walk-in are named apart).
    ``death`` needs death
    dates; ``high_cost`` needs costs; ``social_care_entry`` needs social care services.
    """
    spells = _rows(tables, "inpatient_spells")
    n_spells = 0 if spells is None else len(spells)
    method = (spells["admission_method"].astype("string") if spells is not None
              else pd.Series([], dtype="string"))
    n_emergency = int((method == "emergency").sum())
    n_unknown = int((method == "unknown").sum())
    types = ae_department_counts(tables)
    n_ae = sum(n for t, n in types.items() if t in AE_UNPLANNED_DEPARTMENT_TYPES)
    n_other_ae = sum(types.values()) - n_ae
    out: dict[str, dict] = {}

    share = n_emergency / n_spells if n_spells else 0.0
    if n_spells == 0:
        out["emergency_admission"] = _outcome(False, 0, "no inpatient spells: emergency admission not supported")
    elif (share < min_emergency_share or n_emergency < min_events) and n_ae:
        out["emergency_admission"] = _outcome(
            False, n_emergency,
            f"admission method mostly not recorded ({n_emergency:,} of {n_spells:,} spells emergency, "
            f"{n_unknown:,} unknown): use unplanned_hospital_use")
    elif n_emergency < min_events:
        out["emergency_admission"] = _outcome(
            n_emergency > 0, n_emergency,
            f"few emergency spells ({n_emergency:,} of {n_spells:,}, {n_unknown:,} unknown): fewer than "
            f"{min_events} events cannot validate a model")
    else:
        out["emergency_admission"] = _outcome(
            True, n_emergency, f"{n_emergency:,} of {n_spells:,} spells emergency ({n_unknown:,} unknown)")

    n_unplanned = n_emergency + n_unknown + n_ae
    if n_unplanned == 0:
        out["unplanned_hospital_use"] = _outcome(False, 0, "no unplanned spells and no A&E attendances")
    else:
        spells_words = f"{n_emergency:,} emergency spells" + (f" + {n_unknown:,} of unknown method" if n_unknown else "")
        out["unplanned_hospital_use"] = _outcome(
            True, n_unplanned, _few(f"{spells_words} + {n_ae:,} A&E attendances"
                                    + (f" ({n_other_ae:,} urgent-care or walk-in attendances not counted)"
                                       if n_other_ae else ""), n_unplanned, min_events))

    persons = tables.get("persons")
    deaths = (int(persons["death_date"].notna().sum())
              if persons is not None and "death_date" in persons else 0)
    out["death"] = _outcome(deaths > 0, deaths, _few(f"{deaths:,} deaths", deaths, min_events) if deaths
                            else "no deaths recorded: death outcome not supported")

    # Health-care costs: social care's weekly costs alone make a top-5% by social care, another outcome.
    costed = social = 0
    for name, df in tables.items():
        for column in ("cost", "weekly_cost"):
            if column in df:
                n = int(pd.to_numeric(df[column], errors="coerce").gt(0).sum())
                if name == "social_care":
                    social += n
                else:
                    costed += n
    out["high_cost"] = _outcome(
        costed > 0, costed, f"{costed:,} events with a cost" + (f" (and {social:,} social care services)" if social else "")
        if costed else (f"no health-care costs recorded ({social:,} social care services with a cost are not enough): "
                        f"high_cost not supported" if social else "no costs recorded: high_cost not supported"))

    care = _rows(tables, "social_care")
    n_care = 0 if care is None else len(care)
    out["social_care_entry"] = _outcome(n_care > 0, n_care,
                                        _few(f"{n_care:,} social care services", n_care, min_events) if n_care
                                        else "no social care data: social_care_entry not supported")
    horizon = horizon_support(tables, extract_end=extract_end, data_start=data_start, split=split, guards=guards)
    for name, h in (horizon or {}).items():
        verdict = out[name]
        verdict["recorded"], verdict["horizon"] = verdict["supported"], h
        if verdict["recorded"]:
            verdict["supported"] = h["meets"]
            verdict["message"] = f"{_horizon_message(h)}; all years: {verdict['message']}"
    return out


def _few(text: str, events: int, min_events: int) -> str:
    """``text``, warned when the whole extract holds fewer events than a model's test needs."""
    return text + (f": fewer than {min_events} events cannot validate a model" if events < min_events else "")


# Columns eligibility and follow-up read: hand-made tables without them get the all-years counts only.
_PERSON_COLUMNS = ("person_id", "birth_date", "death_date", "registration_start", "registration_end")


def _span(horizon_days: int) -> str:
    return "year" if horizon_days == 365 else f"{horizon_days} days"


def horizon_support(tables: dict[str, pd.DataFrame], *, extract_end, data_start=None, split=None, guards=None,
                    cohort=None) -> dict[str, dict] | None:
    """Per outcome, what a model trained now would get at the latest date the data can test.

    The test date is the one ``index_dates: auto`` picks (the latest first of the month whose
    horizon ends by ``extract_end``); the people are those eligible there (``cohort``'s ages, alive
    and registered) with a label, ``events`` those with the outcome in the horizon and ``rate``
    their share. ``needed`` gives, for each part of the split (``split``'s fractions; training and
    calibration at each auto training date on or after ``data_start``), the eligible people for
    its expected events (or non-events, when rarer) to reach ``guards``' minimum
    (:func:`people_needed`); ``meets`` is whether the people now reach every one. None when the
    tables lack what eligibility reads or the end is unknown.
    """
    persons = tables.get("persons")
    if extract_end is None or persons is None or any(c not in persons for c in _PERSON_COLUMNS):
        return None
    split, guards, cohort = split or SplitConfig(), guards or GuardsConfig(), cohort or CohortConfig()
    records = LinkedRecords(dict(tables))
    end = pd.Timestamp(extract_end).normalize()
    out = {}
    for name in OUTCOMES:
        outcome = parse_outcome({"name": name})
        train_dates, test_date = suggest_index_dates(end, horizon_days=outcome.horizon_days)
        covered = [d for d in train_dates if data_start is None or pd.Timestamp(d) >= pd.Timestamp(data_start)]
        n_dates = max(len(covered), 1)  # at least the one date the rate is measured at
        ids = pd.Index(eligible_persons(records, test_date, min_age=cohort.min_age,
                                        max_age=cohort.max_age)["person_id"])
        y = outcome.labels(records, test_date, ids, extract_end=end).to_numpy()
        labelled = int(np.isfinite(y).sum())
        events = int((y == 1).sum())
        rate = events / labelled if labelled else 0.0
        rarer = min(rate, 1 - rate)  # the guards count events and non-events, whichever is fewer
        train_fraction = 1 - split.test_fraction - split.calibration_fraction
        parts = {"training": (guards.min_events_train, train_fraction * n_dates),
                 "calibration": (guards.min_events_calibration, split.calibration_fraction * n_dates),
                 "test": (guards.min_events_test, split.test_fraction)}
        needed = {part: people_needed(minimum, rarer, share) for part, (minimum, share) in parts.items()}
        meets = all(n is not None and labelled >= n for n in needed.values())
        out[name] = {"test_date": test_date, "horizon_days": int(outcome.horizon_days), "eligible": len(ids),
                     "labelled": labelled, "events": events, "rate": round(rate, 6),
                     "shares": {part: round(share, 6) for part, (_, share) in parts.items()},
                     "minimums": {part: int(minimum) for part, (minimum, _) in parts.items()},
                     "needed": needed, "meets": bool(meets)}
    return out


def _horizon_message(h: dict) -> str:
    """The verdict at the latest testable date: the events per horizon, the rate, and (when short) the
    people needed with the arithmetic of the part that needs most."""
    at = (f"{h['events']:,} event{'' if h['events'] == 1 else 's'} per {_span(h['horizon_days'])} at "
          f"{h['test_date']} among {h['labelled']:,} eligible people (rate {h['rate']:.1%})")
    if h["meets"]:
        return at
    if h["events"] == 0 or h["events"] == h["labelled"]:
        return f"too small: {at}; no number of people is enough at this rate"
    short = {p: n for p, n in h["needed"].items() if n is not None and h["labelled"] < n}
    part = max(short, key=lambda p: short[p])
    rarer = min(h["rate"], 1 - h["rate"])
    which = "" if rarer == h["rate"] else " (the people without the outcome are the rarer class)"
    return (f"too small: {at}; about {short[part]:,} people would be needed{which} ({part}: "
            f"{h['minimums'][part]} / ({rarer:.1%} x {h['shares'][part]:g}), guards.min_events_{_GUARD[part]})")


_GUARD = {"training": "train", "calibration": "calibration", "test": "test"}


def ae_department_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """A&E attendances per department type (every type of :data:`~riskstrat.data.schema.AE_DEPARTMENT_TYPES`,
    0 when none; a blank or absent type counts as unknown, as validation reads it). Empty without A&E."""
    ae = _rows(tables, "ae_attendances")
    if ae is None:
        return {}
    kinds = (ae["department_type"].astype("string").fillna("unknown") if "department_type" in ae
             else pd.Series("unknown", index=ae.index, dtype="string"))
    counts = kinds.value_counts()
    return {t: int(counts.get(t, 0)) for t in AE_DEPARTMENT_TYPES}


def _people_without_practice(tables: dict[str, pd.DataFrame]) -> int:
    persons = tables.get("persons")
    if persons is None or "practice_id" not in persons:
        return 0
    practice = persons["practice_id"].astype("string").str.strip()
    return int((practice.isna() | (practice == "")).sum())


def _unreadable(summary: "ImportSummary") -> dict[str, dict]:
    """Source columns with values that could not be read: counts and shapes (never values)."""
    return {key: {"kind": e["kind"], "present": int(e["present"]), "unreadable": int(e["unreadable"]),
                  "shapes": dict(e["shapes"])}
            for key, e in summary.unreadable.items() if e["unreadable"]}


def _shapes(shapes: dict[str, int], n: int = 3) -> str:
    top = sorted(shapes.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{shape} ({k:,})" for shape, k in top)


def unreadable_cost_issues(summary: "ImportSummary", *,
                           max_share: float = MAX_UNREADABLE_COST_SHARE) -> list:
    """A ``unreadable_cost`` warning (a :class:`~riskstrat.data.validate.ValidationIssue`) for each source cost
    column with more than ``max_share`` of its present values unreadable; the import still completes."""
    issues = []
    for key, e in _unreadable(summary).items():
        if e["kind"] != "cost" or not e["present"] or e["unreadable"] / e["present"] <= max_share:
            continue
        file, column = key.split(": ", 1)
        shapes = tuple(f"{shape} ({k:,})" for shape, k in sorted(e["shapes"].items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        message = (f"{file}, column {column}: {e['unreadable']:,} of {e['present']:,} costs "
                   f"({e['unreadable'] / e['present']:.0%}) could not be read as numbers (shapes, letters c and "
                   f"digits N: {', '.join(shapes)}) and were stored as missing, so cost features and a high-cost "
                   f"outcome would undercount; correct them in the source to plain numbers such as 1234.5 and "
                   f"import again.")
        issues.append(ValidationIssue(table=file, column=column, rule="unreadable_cost", severity="warning",
                                      n_rows=e["unreadable"], examples=shapes, file=file, message=message,
                                      action="kept as unknown"))
    return issues


def _costs_recorded(tables: dict[str, pd.DataFrame]) -> bool:
    """Whether any table holds a cost (``cost`` or social care's ``weekly_cost``) in some row."""
    return any(column in frame and frame[column].notna().any()
               for frame in tables.values() if frame is not None for column in COST_COLUMNS)


def import_report(summary: "ImportSummary", validation: "ValidationReport",
                  tables: dict[str, pd.DataFrame]) -> dict:
    """The JSON-able import report: counts, where each source went, drops with example codes, outcomes.

    Holds no person ids, dates of birth or row examples from validation (those can name people).
    """
    dropped = [{"reason": reason, "rows": n, "examples": list(summary.drop_examples.get(reason, []))}
               for reason, n in summary.dropped.items()]
    # Validation: one entry per table (a row can break several rules), naming the rules; no examples
    # (validation's examples are rows and dates of people).
    for table, n in validation.dropped.items():
        if n:
            rules = sorted({i.rule for i in validation.issues
                            if i.table == table and (i.action or "").startswith("dropped")})
            dropped.append({"reason": f"validation: {table} rows dropped ({', '.join(rules) or 'see validation'})",
                            "rows": int(n), "examples": []})
    cut_back = {}
    for issue in validation.issues:
        if (issue.action or "").startswith("cut back"):
            cut_back[f"{issue.table}.{issue.column}"] = cut_back.get(f"{issue.table}.{issue.column}", 0) + issue.n_rows
    # OMOP only (the reader's summary has them): conditions, drug domains, the observation-period rule.
    omop = {key: value for key, value in (
        ("long_term_conditions", {k: {"people": v["people"], "by_path": dict(v["by_path"])}
                                  for k, v in summary.condition_matches.items()}),
        ("unmatched_condition_codes", [dict(u) for u in summary.unmatched_conditions]),
        ("drug_exposure", dict(summary.drug_domains)),
        ("observation_periods", dict(summary.observation_periods))) if value}
    return {
        "source_format": summary.source,
        "riskstrat_version": riskstrat.__version__,
        "currency": summary.currency,
        # Any cost in any table: without one, "costs in GBP" would be untrue (HES, an OMOP export without COST).
        "costs_recorded": _costs_recorded(tables),
        "people": summary.people,
        "people_without_practice": _people_without_practice(tables),
        "ae_department_types": ae_department_counts(tables),
        "practice_exclusions": dict(summary.practice_exclusions),
        "date_range": list(summary.date_range),
        "extract_end": extract_end(summary),
        "events_after_extract_end": 0 if summary.extract_end else summary.events_after_data_end,
        "rows_in": dict(summary.source_rows),
        "routes": {f: dict(t) for f, t in summary.routes.items()},
        "rows_out": dict(summary.output_rows),
        "dropped": dropped,
        "unknown_codes": {f: dict(v) for f, v in summary.unknown_codes.items()},
        "unreadable_values": _unreadable(summary),
        "conflicts": dict(summary.conflicts),
        "vocabulary_cycles_broken": dict(summary.vocabulary_cycles),
        "notes": list(summary.notes),
        "validation": {"ok": validation.ok, "errors": len(validation.errors),
                       "warnings": len(validation.warnings), "end_dates_cut_back_to_death": cut_back},
        "outcomes": supported_outcomes(tables, extract_end=extract_end(summary), data_start=summary.date_range[0]),
        **omop,
    }


def extract_end(summary: "ImportSummary") -> str | None:
    """The reader's known extract end, else where the monthly event volume stops (a stray late date
    left out: :mod:`riskstrat.data.data_end`), else the last event date."""
    return summary.extract_end or summary.data_end or summary.date_range[1]


def dataset_metadata(summary: "ImportSummary") -> dict:
    """``dataset.json`` for an imported folder: format, currency, extract end, riskstrat version."""
    return {"source_format": summary.source, "currency": summary.currency, "extract_end": extract_end(summary),
            "riskstrat_version": riskstrat.__version__, "schema_version": SCHEMA_VERSION}


def format_import_report(report: dict) -> str:
    """Plain text of an import report, for the CLI and logs."""
    first, last = report["date_range"]
    lines = [f"{report['source_format']} import: {report['people']:,} people, events {first or '?'} to "
             f"{last or '?'} (extract end {report['extract_end'] or '?'}), "
             + (f"costs in {report['currency']}" if report.get("costs_recorded", True) else "no costs recorded"),
             f"people without a registered practice: {report['people_without_practice']:,}"]
    excluded = report.get("practice_exclusions") or {}
    if excluded.get("hospitals_excluded"):
        lines.append(f"  of whom {excluded.get('people_whose_only_candidate_was_a_hospital', 0):,} seen for primary "
                     f"care only at a hospital ({excluded['hospitals_excluded']:,} hospitals not taken as practices)")
    types = report.get("ae_department_types") or {}
    if types:
        shown = ", ".join(f"{t.replace('_', ' ')} {n:,}" for t, n in types.items() if n and t != "unknown")
        lines.append(f"A&E attendances by department type: {shown or 'none known'}; type unknown: "
                     f"{types.get('unknown', 0):,}" + (" (unplanned_hospital_use and the A&E features count "
                                                       "emergency, single-specialty and unknown types)"))
    lines += ["", "rows in -> rows out (before validation):"]
    for source, n in report["rows_in"].items():
        went = ", ".join(f"{table} {m:,}" for table, m in report["routes"].get(source, {}).items())
        lines.append(f"  {source}: {n:,} -> {went or 'see canonical tables'}")
    lines += ["", "canonical tables written:"]
    lines += [f"  {table}: {n:,}" for table, n in report["rows_out"].items()]
    if report["dropped"]:
        lines += ["", "rows dropped:"]
        for drop in report["dropped"]:
            eg = f" (e.g. {', '.join(drop['examples'])})" if drop["examples"] else ""
            lines.append(f"  {drop['rows']:,}  {drop['reason']}{eg}")
    if report["unknown_codes"]:
        lines += ["", "codes outside the data dictionary (mapped to unknown / missing):"]
        for source_field, counts in report["unknown_codes"].items():
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{v} ({n:,})" for v, n in top[:3])
            lines.append(f"  {source_field}: {sum(counts.values()):,} rows, e.g. {shown}")
    if report.get("unreadable_values"):
        lines += ["", "values that could not be read as numbers or dates (stored as missing; shown by shape, "
                      "letters c, digits N):"]
        for where, e in report["unreadable_values"].items():
            share = e["unreadable"] / e["present"] if e["present"] else 1.0
            lines.append(f"  {where}: {e['unreadable']:,} of {e['present']:,} {e['kind']} values ({share:.1%}), "
                         f"e.g. {_shapes(e['shapes'])}")
    if report["conflicts"]:
        lines += ["", "people whose records disagree (most recent record kept):"]
        lines += [f"  {field}: {n:,}" for field, n in report["conflicts"].items()]
    lines += _omop_lines(report)
    if report["notes"]:
        lines += [""] + [f"note: {note}" for note in report["notes"]]
    lines += ["", "outcomes the data can support:"]
    for name, verdict in report["outcomes"].items():
        if "horizon" in verdict and verdict["recorded"]:
            mark = "yes" if verdict["supported"] else "no "  # the message starts "too small: ..."
        else:
            mark = ("few" if "fewer than" in verdict["message"] else "yes") if verdict["supported"] else "no "
        lines.append(f"  {mark} {name}: {verdict['message']}")
    return "\n".join(lines)


def _omop_lines(report: dict) -> list[str]:
    """The OMOP sections of the plain-text report (none for other formats)."""
    lines = []
    if report.get("long_term_conditions"):
        lines += ["", "long-term conditions (people; found by path):"]
        for condition, m in report["long_term_conditions"].items():
            paths = ", ".join(f"{path} {n:,}" for path, n in m["by_path"].items())
            lines.append(f"  {condition}: {m['people']:,}" + (f" ({paths})" if paths else ""))
    if report.get("unmatched_condition_codes"):
        lines += ["", "most frequent condition codes matched to no long-term condition (rows, people):"]
        for u in report["unmatched_condition_codes"]:
            what = (f"concept {u['concept_id']}" + (f" {u['concept_name']}" if u["concept_name"] else "")
                    if u["concept_id"] else f"source value {u['source_value'] or '(blank)'}")
            lines.append(f"  {what}: {u['rows']:,} rows, {u['people']:,} people")
    drugs = report.get("drug_exposure")
    if drugs:
        dropped = ", ".join(f"{domain} {n:,}" for domain, n in drugs.get("not_drugs_dropped", {}).items())
        lines += ["", f"drug_exposure: {drugs['rows']:,} rows: {drugs['medicines']:,} medicines, {drugs['vaccines']:,} "
                      f"vaccines, {drugs['domain_unknown_kept']:,} of unknown domain (kept)"
                      + (f"; not drugs, dropped: {dropped}" if dropped else "")]
        lines.append("  BNF chapters: " + ", ".join(f"{k} {n:,}" for k, n in drugs.get("bnf_chapter", {}).items()))
    periods = report.get("observation_periods")
    if periods:
        lines += ["", f"observation periods ({periods['option']}, rule {periods['rule']}): "
                      f"{periods['ending_at_last_record']:,} of {periods['people_compared']:,} living people whose period "
                      f"ends early end within a week of their last record; {periods.get('extended', 0):,} followed "
                      f"to the extract end, {periods.get('censored', 0):,} censored"
                      + (f"; {periods['died_period_kept']:,} who died keep their period's end"
                         if periods.get("died_period_kept") else "")]
    return lines
