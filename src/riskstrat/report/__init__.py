"""Reports rendered from Jinja2 templates (:mod:`riskstrat.templates`): the evaluation report (HTML,
autoescaped, self-contained: figures embedded as base64 PNG, no network references) and the model
card draft (Markdown). Writing goes through :func:`riskstrat.data.io.atomic_path`.
"""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from riskstrat.data.io import atomic_path, money, write_json, write_text
from riskstrat.evaluation import plots
from riskstrat.features.words import feature
from riskstrat.report import _sections as sections
from riskstrat.templates import environment

APPROVAL_PLACEHOLDER = "_to be completed by the approver_"


def fmt(value, digits: int = 3) -> str:
    """A table cell: whole numbers of 100 or more with thousands separators, other numbers to
    ``digits`` places, NaN as a dash, booleans as "yes" or blank.

    Text is shown as written: a deprivation quintile "2" or a practice id "123456" is a label.

    >>> fmt(1234.0), fmt(0.81234), fmt(float("nan")), fmt(True), fmt(7), fmt("2"), fmt("123456")
    ('1,234', '0.812', '-', 'yes', '7', '2', '123456')
    >>> fmt(-0.0001), fmt(937.5, 0), fmt(1234.56, 1)
    ('0.000', '938', '1,234.6')
    """
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "-"
    if math.isinf(number):
        return "inf"
    if number.is_integer() and abs(number) >= 100:
        return f"{number:,.0f}"
    text = f"{number:,.{digits}f}" if abs(number) >= 1000 else f"{number:.{digits}f}"
    return text.lstrip("-") if float(text.replace(",", "")) == 0 else text  # no "-0.000"


# Column names as a reader says them (the CSV files keep the code names).
_COLUMN_NAMES = {"o_e_ratio": "O/E", "relative_o_e": "relative O/E", "o_e_ci_low": "O/E CI low",
                 "o_e_ci_high": "O/E CI high", "n_events": "events", "n_flagged": "flagged",
                 "mean_abs_shap": "mean |SHAP|", "events_per_1000_flagged": "events per 1,000 flagged"}
_COLUMN_WORDS = {"auroc": "AUROC", "auprc": "AUPRC", "ppv": "PPV", "ici": "ICI", "ci": "CI", "brier": "Brier",
                 "shap": "SHAP"}
_N = r"[-+]?[^\w\s,.%-]?[\d,]*\.?\d+%?( [A-Z]{3})?"
# "0.873", "1,234", "£1,234", "17.8%", "-", and an estimate with its interval "0.873 (0.850 to 0.894)".
_NUMBER = re.compile(rf"^(-|{_N}( \({_N} to {_N}\))?)$")
# Metric names where they are values (the subgroup gaps' "metric" column).
METRIC_NAMES = {"auroc": "AUROC", "o_e_ratio": "O/E"}


def column_label(name) -> str:
    """A table column's heading in the report: the code name in words, with the field's abbreviations.

    >>> column_label("auroc_ci_low"), column_label("ppv_top_1pct"), column_label("o_e_ratio")
    ('AUROC CI low', 'PPV top 1%', 'O/E')
    >>> column_label("events_listed_top_0.5pct"), column_label("number_needed_to_flag")
    ('events listed top 0.5%', 'number needed to flag')
    """
    name = str(name)
    if name in _COLUMN_NAMES:
        return _COLUMN_NAMES[name]
    name = re.sub(r"(?<![^_])top_(\d+(?:\.\d+)?)pct(?![^_])", r"top \1%", name)
    return " ".join(_COLUMN_WORDS.get(word, word) for word in name.replace("_", " ").split(" "))


def table(frame: pd.DataFrame, *, index: bool = False, digits: dict | None = None, muted=None) -> dict:
    """A DataFrame as ``{"columns": [...], "rows": [[cell, ...]], "text": [...], "muted": [...]}``:
    formatted strings under readable headings (:func:`column_label`), which columns hold text (set
    left, numbers right) and which rows to show muted (``muted``: one bool a row, e.g. small groups)."""
    frame = frame.reset_index() if index else frame
    digits = digits or {}
    rows = []
    for record in frame.itertuples(index=False):
        rows.append([fmt(v.item() if hasattr(v, "item") else v, digits.get(c, 3)) for c, v in zip(frame.columns, record)])
    # A column is text (set left) unless every cell reads as a number, an amount of money or a percentage.
    text = [not all(_NUMBER.match(row[i]) for row in rows) for i in range(len(frame.columns))]
    return {"columns": [column_label(c) for c in frame.columns], "rows": rows, "text": text,
            "muted": [bool(m) for m in muted] if muted is not None else [False] * len(rows)}


def figures_of(evaluation, *, band_resamples: int = plots.CALIBRATION_BAND_RESAMPLES) -> dict[str, object]:
    """The evaluation's figures by file stem (what goes to PNG and into the report), as matplotlib
    Figures: ``roc``, ``pr``, ``calibration`` (smoothed, the candidate, its band from ``band_resamples``
    bootstrap resamples), ``calibration_deciles`` (every probability), ``top_k_ppv`` and
    ``decision_curve``. A notebook shows each inline."""
    y, scores = evaluation.y, evaluation.scores
    probs = {k: v for k, v in scores.items() if k != "prior_use"}
    return {"roc": plots.roc_figure(y, scores), "pr": plots.pr_figure(y, scores),
            "calibration": plots.smoothed_calibration_figure(y, scores["candidate"], n_boot=band_resamples),
            "calibration_deciles": plots.calibration_figure(y, probs),
            "top_k_ppv": plots.topk_ppv_figure(y, scores),
            "decision_curve": plots.decision_curve_figure(evaluation.decision_curve)}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    plots._close(fig)
    return buffer.getvalue()


def tables_of(evaluation, drivers: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The evaluation's tables by file stem (what goes to CSV and into the report)."""
    frame = evaluation.subgroups
    out = {"headline": evaluation.headline.reset_index(), "comparison": evaluation.comparison,
           "observed_expected_by_decile": evaluation.oe_decile, "observed_expected_by_tier": evaluation.oe_tier,
           "case_finding": evaluation.case_finding, "decision_curve": evaluation.decision_curve,
           "recalibration": evaluation.recalibration.reset_index(), "subgroups": frame.by_group.reset_index(),
           "subgroup_gaps": pd.concat([frame.gaps("auroc"), frame.gaps("o_e_ratio")], ignore_index=True),
           "calibration_curve": evaluation.calibration_curve}
    if evaluation.cost is not None:
        out["cost_capture"] = evaluation.cost.capture
        if evaluation.cost.by_decile is not None:
            out["cost_by_decile"] = evaluation.cost.by_decile
    if drivers is not None:
        out["drivers"] = drivers
    return out


def _cost_tables(cost) -> dict:
    """The cost evidence's tables for the report, money in the data set's currency."""
    def cash(values):
        return [money(v, cost.currency) for v in values]

    capture = cost.capture
    shown = pd.DataFrame({"list": capture["list"], "ranked by": capture["model"], "people flagged": capture["flagged"],
                          "share of all next-year cost": [f"{v:.1%}" for v in capture["cost_share"]],
                          "mean cost of those flagged": cash(capture["mean_cost_flagged"]),
                          "their total cost": cash(capture["cost_flagged"])}).sort_values("list", kind="stable")
    out = {"capture": table(shown, muted=shown["ranked by"].eq("by actual cost"))}  # the ceiling, not a list
    if cost.by_decile is not None:
        d = cost.by_decile
        out["by_decile"] = table(pd.DataFrame({
            "decile of predicted cost": d["decile"], "people": d["n"], "mean predicted": cash(d["mean_predicted"]),
            "mean actual": cash(d["mean_actual"]), "actual / predicted": d["actual_to_predicted"]}),
            digits={"actual / predicted": 2})
    if cost.summary:
        out["summary"] = {"predicted_total": money(cost.summary["predicted_total"], cost.currency),
                          "actual_total": money(cost.total, cost.currency), "ratio": cost.summary["cost_ratio"],
                          "mae": money(cost.summary["cost_mae"], cost.currency)}
    else:
        out["summary"] = {"actual_total": money(cost.total, cost.currency)}
    return out


HEADLINE_COLUMNS = ["model", "auroc", "auroc_ci_low", "auroc_ci_high", "auprc", "auprc_ci_low", "auprc_ci_high",
                    "brier", "calibration_slope", "calibration_slope_ci_low", "calibration_slope_ci_high",
                    "calibration_slope_not_estimable", "calibration_intercept", "ici", "o_e_ratio", "o_e_ci_low",
                    "o_e_ci_high", "ppv_top_1pct", "ppv_top_5pct", "sensitivity_top_5pct", "bootstrap_resamples_used"]


def with_interval(value, low, high, digits: int = 3) -> str:
    """An estimate with its 95% interval in one cell, as a reader says it.

    >>> with_interval(0.8731, 0.85, 0.894), with_interval(0.9, float("nan"), float("nan")), with_interval(None, 1, 2)
    ('0.873 (0.850 to 0.894)', '0.900 (no interval)', '-')
    """
    def finite(x) -> bool:
        try:
            return x is not None and math.isfinite(float(x))
        except (TypeError, ValueError):
            return False

    if not finite(value):
        return "-"
    if finite(low) and finite(high):
        return f"{fmt(float(value), digits)} ({fmt(float(low), digits)} to {fmt(float(high), digits)})"
    return f"{fmt(float(value), digits)} (no interval)"


def slope_cell(row) -> str:
    """The calibration slope with its interval, or why it cannot be estimated ("-" for a ranking score)."""
    code = row.get("calibration_slope_not_estimable")
    if code is not None and code == code and code:
        return "not estimable: " + sections.NOT_ESTIMABLE_WORDS.get(float(code), "reason not recorded")
    return with_interval(row.get("calibration_slope"), row.get("calibration_slope_ci_low"),
                         row.get("calibration_slope_ci_high"), 2)


def headline_view(frame: pd.DataFrame, model_name: str) -> pd.DataFrame:
    """The headline as the report shows it: each estimate with its 95% interval in one cell, the slope's
    reason where it cannot be estimated, the bootstrap resamples used. ``frame``: one row per model
    (a ``model`` column), the columns of :data:`HEADLINE_COLUMNS` or some of them."""
    f = frame.reindex(columns=HEADLINE_COLUMNS)
    rows = f.to_dict("records")
    return pd.DataFrame({
        "model": [sections.model_words(str(m), model_name) for m in f["model"]],
        "AUROC (95% CI)": [with_interval(r["auroc"], r["auroc_ci_low"], r["auroc_ci_high"]) for r in rows],
        "AUPRC (95% CI)": [with_interval(r["auprc"], r["auprc_ci_low"], r["auprc_ci_high"]) for r in rows],
        "calibration slope (95% CI)": [slope_cell(r) for r in rows],
        "calibration intercept": f["calibration_intercept"],
        "O/E (95% CI)": [with_interval(r["o_e_ratio"], r["o_e_ci_low"], r["o_e_ci_high"], 2) for r in rows],
        "ICI": f["ici"], "Brier": f["brier"], "PPV top 1%": f["ppv_top_1pct"], "PPV top 5%": f["ppv_top_5pct"],
        "sensitivity top 5%": f["sensitivity_top_5pct"],
        "bootstrap resamples used": [int(v) if v == v and v is not None else None
                                     for v in f["bootstrap_resamples_used"]]})


def group_view(part: pd.DataFrame) -> pd.DataFrame:
    """One attribute's groups as the report shows them: AUROC, the prior use rule's AUROC in the group and
    the paired difference, O/E and the calibration slope, each with its 95% interval."""
    rows = part.to_dict("records")
    listed = [c for c in part.columns if str(c).startswith("events_listed")]
    view = {"group": part["group"].astype(str), "people": part["n"], "events": part["n_events"],
            "small": part["small"],
            "AUROC (95% CI)": [with_interval(r.get("auroc"), r.get("auroc_ci_low"), r.get("auroc_ci_high"))
                               for r in rows]}
    if "reference_auroc" in part.columns and part["reference_auroc"].notna().any():
        view["prior use rule's AUROC"] = part["reference_auroc"]
        view["AUROC minus the prior use rule's (95% CI)"] = [
            with_interval(r.get("minus_reference"), r.get("minus_reference_ci_low"), r.get("minus_reference_ci_high"))
            for r in rows]
    view["O/E (95% CI)"] = [with_interval(r.get("o_e_ratio"), r.get("o_e_ci_low"), r.get("o_e_ci_high"), 2)
                            for r in rows]
    if "calibration_slope" in part.columns:
        view["calibration slope (95% CI)"] = [slope_cell(r) for r in rows]
    view["observed rate"], view["expected rate"] = part["observed_rate"], part["expected_rate"]
    for c in listed:
        view[column_label(c)] = part[c]
    return pd.DataFrame(view).reset_index(drop=True)


def observed_expected_view(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    """O/E by decile or tier with its exact Poisson 95% interval in one cell."""
    rows = frame.to_dict("records")
    return pd.DataFrame({key: frame[key], "people": frame["n"], "observed": frame["observed"],
                         "expected": frame["expected"], "observed rate": frame["observed_rate"],
                         "expected rate": frame["expected_rate"],
                         "O/E (95% CI)": [with_interval(r["o_e_ratio"], r.get("o_e_ci_low"), r.get("o_e_ci_high"), 2)
                                          for r in rows]})


def _described(drivers: pd.DataFrame) -> pd.DataFrame:
    """The drivers table with each feature's plain-English meaning (blank for a feature riskstrat
    does not know, e.g. a custom model's)."""
    def meaning(name: str) -> str:
        try:
            return feature(name).description
        except (KeyError, ValueError):
            return ""

    return drivers.assign(meaning=[meaning(n) for n in drivers["feature"]])


def report_parts(evaluation, context: dict, criteria=()) -> dict:
    """The reviewer's parts of the report (and card): verdict, in-sample warning, conclusions, design
    sentences, sample size, tuning, flow, Table 1, limitations, feature meanings, the TRIPOD+AI items."""
    parts = {"verdict": sections.verdict(criteria, evaluation, context),
            "in_sample": sections.in_sample_warning(context),
            "conclusions": sections.conclusions(evaluation, context),
            "design": sections.design_sentences(context), "sample_size": sections.sample_size_sentences(context),
            "tuning": sections.tuning_sentence(context), "flow": sections.flow_table(context),
            "table_one": sections.characteristics_table(context),
            "limitations": sections.limitations(context, evaluation),
            "meanings": sections.feature_meanings(context.get("features") or []),
            "tripod": sections.tripod_items(),
            "gate_rules": sections.gate_sentences(context), "measures": sections.measures_sentences(context),
            "slope": slope_cell(evaluation.headline.loc["candidate"].to_dict()),
            "o_e": with_interval(*(evaluation.headline.loc["candidate"].get(k) for k in
                                   ("o_e_ratio", "o_e_ci_low", "o_e_ci_high")), 2),
            "min_age": (((context.get("design") or {}).get("training") or {}).get("cohort") or {}).get("min_age", 18)}
    parts["min_age"] = f"{parts['min_age']:g}"
    return parts


def render_report(evaluation, context: dict, *, figures_png: dict[str, bytes], drivers=None, criteria=()) -> str:
    """The self-contained HTML report."""
    tables = tables_of(evaluation, drivers)
    name = context["model_name"]
    headline = headline_view(tables["headline"], name)
    by_group = evaluation.subgroups.by_group.reset_index()
    subgroup_tables = {attr: table(group_view(part), muted=part["small"]) for attr, part in
                       by_group.groupby("attribute", sort=False)}
    gaps = tables["subgroup_gaps"].assign(metric=lambda t: t["metric"].map(METRIC_NAMES).fillna(t["metric"]))
    # The list label says the fraction; counts per 1,000 as whole numbers; expected counts to one place.
    case_finding = tables["case_finding"].drop(columns="fraction")
    images = {k: base64.b64encode(v).decode("ascii") for k, v in figures_png.items()}
    dependence = {k.removeprefix("dependence_"): v for k, v in images.items() if k.startswith("dependence_")}
    unseen = (context.get("unseen") or {}).get("headline")
    unseen = table(headline_view(pd.DataFrame(unseen), name), digits={"ICI": 4, "Brier": 4}) if unseen else None
    parts = report_parts(evaluation, context, criteria)
    return environment().get_template("evaluation.html").render(
        c=context, ev=evaluation, headline=table(headline, digits={"ICI": 4, "Brier": 4}),
        comparison=table(pd.DataFrame({
            "compared with": [sections.model_words(str(v), name) for v in tables["comparison"]["versus"]],
            "AUROC difference (95% CI)": [with_interval(r.auroc_difference, r.ci_low, r.ci_high)
                                          for r in tables["comparison"].itertuples()]})),
        unseen_headline=unseen,
        oe_decile=table(observed_expected_view(tables["observed_expected_by_decile"], "decile"), digits={"expected": 1}),
        oe_tier=table(observed_expected_view(tables["observed_expected_by_tier"], "tier"), digits={"expected": 1}),
        case_finding=table(case_finding, digits={"number_needed_to_flag": 2, "events_per_1000_flagged": 0}),
        recalibration=table(tables["recalibration"], digits={"ici": 4}),
        gaps=table(gaps), subgroups=subgroup_tables,
        drivers=table(_described(drivers)) if drivers is not None else None, images=images, criteria=list(criteria),
        dependence=dependence, cost=_cost_tables(evaluation.cost) if evaluation.cost is not None else None,
        candidate=evaluation.headline.loc["candidate"].to_dict(), p=parts, flow=table(parts["flow"]),
        table_one=table(parts["table_one"]), meanings=table(parts["meanings"]), model_words=sections.model_words)


def write_evaluation(out_dir: str | Path, evaluation, context: dict, *, drivers=None, criteria=(),
                     extra_figures: dict | None = None, figures: bool = True,
                     band_resamples: int = plots.CALIBRATION_BAND_RESAMPLES) -> Path:
    """Write ``report.html``, ``tables/*.csv``, ``figures/*.png`` and ``evaluation.json`` (one folder,
    atomically). ``extra_figures`` (name: figure) are added, e.g. the SHAP summary and dependence plots
    (``shap_summary``, ``dependence_<feature>``: shown under the global drivers). ``band_resamples``: the
    smoothed calibration band's bootstrap resamples; without ``figures`` no figure is drawn (the report
    says so) and ``extra_figures`` are closed unsaved."""
    out_dir = Path(out_dir)
    drawn = {**figures_of(evaluation, band_resamples=band_resamples), **(extra_figures or {})} if figures else {}
    if not figures:
        for fig in (extra_figures or {}).values():
            plots._close(fig)
    figures_png = {name: _png(fig) for name, fig in drawn.items()}
    with atomic_path(out_dir, directory=True, kind="evaluation report") as tmp:
        tmp = Path(tmp)
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for name, frame in tables_of(evaluation, drivers).items():
            frame.to_csv(tmp / "tables" / f"{name}.csv", index=False)
        # The design's tables beside the evidence's (aggregates only: counts and shares).
        sections.flow_table(context).to_csv(tmp / "tables" / "participant_flow.csv", index=False)
        sections.characteristics_table(context).to_csv(tmp / "tables" / "characteristics.csv", index=False)
        if (context.get("unseen") or {}).get("headline"):  # with --include-seen: the unseen people apart
            pd.DataFrame(context["unseen"]["headline"]).to_csv(tmp / "tables" / "headline_unseen.csv", index=False)
        for name, png in figures_png.items():
            (tmp / "figures" / f"{name}.png").write_bytes(png)
        html = render_report(evaluation, context, figures_png=figures_png, drivers=drivers, criteria=criteria)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        write_json({"context": context, "metrics": evaluation.metrics,
                    "gate": [c.__dict__ for c in criteria]}, tmp / "evaluation.json")
    return out_dir


def weak_groups(evaluation, *, margin: float = 0.05, oe_band: tuple[float, float] = (0.8, 1.25)) -> pd.DataFrame:
    """Groups with enough events whose AUROC is more than ``margin`` below the overall AUROC, or
    whose observed/expected, relative to the overall observed/expected, lies outside ``oe_band``
    (a group calibrated differently from the rest): what the card lists as known weak groups."""
    overall = evaluation.subgroups.overall
    reliable = evaluation.subgroups.reliable().reset_index()
    relative_oe = reliable["o_e_ratio"] / overall["o_e_ratio"]
    weak = reliable[(reliable["auroc"] < overall["auroc"] - margin) | (relative_oe < oe_band[0])
                    | (relative_oe > oe_band[1])]
    return weak.assign(relative_o_e=relative_oe[weak.index]).sort_values("auroc")


def _approved(card: Path) -> bool:
    for line in card.read_text(encoding="utf-8").splitlines():
        if line.startswith("- Approved by:"):
            return APPROVAL_PLACEHOLDER not in line and line.strip() != "- Approved by:"
    return False


def render_card(evaluation, context: dict, *, drivers=None, criteria=()) -> str:
    """The model card draft (Markdown)."""
    by_group = evaluation.subgroups.by_group.reset_index()
    by_group = by_group[by_group["attribute"] != "GP practice"]  # practices: in the report, too many for a card
    practices = evaluation.subgroups.by_group.loc["GP practice"] if "GP practice" in \
        evaluation.subgroups.by_group.index.get_level_values(0) else None
    return environment().get_template("card.md").render(
        c=context, ev=evaluation, candidate=evaluation.headline.loc["candidate"].to_dict(),
        comparison=evaluation.comparison.to_dict("records"), subgroups=by_group.to_dict("records"),
        weak=weak_groups(evaluation).to_dict("records"), drivers=drivers.to_dict("records") if drivers is not None else [],
        practices=practices, fmt=fmt, with_interval=with_interval, placeholder=APPROVAL_PLACEHOLDER,
        case_finding=evaluation.case_finding.to_dict("records"), p=report_parts(evaluation, context, criteria),
        tiers=evaluation.oe_tier.to_dict("records"),
        meanings=sections.feature_meanings(context.get("features") or []).to_dict("records"),
        review_date=(pd.Timestamp(context.get("created") or pd.Timestamp.today()) + pd.DateOffset(years=1)).date())


def write_card(folder: str | Path, evaluation, context: dict, *, drivers=None, criteria=()) -> Path:
    """Write ``card.md`` in ``folder``; if the card there has been approved, write ``card.draft.md`` beside it
    instead (an approved card is a person's signed text: never overwritten)."""
    folder = Path(folder)
    card = folder / "card.md"
    target = folder / "card.draft.md" if card.exists() and _approved(card) else card
    return write_text(render_card(evaluation, context, drivers=drivers, criteria=criteria), target)


# ----------------------------------------------------------------------------- monitoring


def monitoring_tables(results, *, assessed, pending, worklist: dict | None = None) -> dict[str, pd.DataFrame]:
    """The monitoring report's tables by file stem: ``months`` (every month, assessed or when it
    matures), ``summary`` (one row per assessed month), ``by_tier``, ``by_practice``, ``holdout``, and
    with ``worklist`` (month -> outcomes by worklist status) ``by_worklist_status``.
    Aggregates only: counts, rates and ratios per month, tier, practice and status group."""
    months = []
    for m, status in [*((m, "assessed") for m in assessed), *((m, "not yet matured") for m in pending)]:
        months.append({"month": m.month, "scored_on": str(m.as_of.date()), "model": m.model_name,
                       "version": m.model_version, "outcome": m.outcome_words, "horizon_days": m.horizon_days,
                       "data_needed_to": str((m.matures_on - pd.Timedelta(days=1)).date()), "status": status})
    months = pd.DataFrame(months).sort_values("month", ignore_index=True)
    by_month = {m.month: m for m in assessed}
    summary, tier, practice, holdout = [], [], [], []
    for r in results:
        m = by_month[r.month]
        summary.append({"month": r.month, "model": m.model_name, "version": m.model_version,
                        **{f"people_{k}": v for k, v in r.counts.items()}, **r.headline})
        tier.append(r.by("tier").assign(month=r.month))
        practice.append(r.by("GP practice").assign(month=r.month))
        if r.holdout:
            holdout.append({"month": r.month, **{k: v for k, v in r.holdout.items() if k != "exempt_tiers"},
                            "exempt_tiers": ", ".join(r.holdout["exempt_tiers"]) or "none"})

    def month_first(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"month": []})
        return frame[["month", *[c for c in frame.columns if c != "month"]]]

    tables = {"months": months, "summary": pd.DataFrame(summary), "by_tier": month_first(tier),
              "by_practice": month_first(practice), "holdout": pd.DataFrame(holdout, columns=[
                  "month", "n_shown", "events_shown", "per_1000_shown", "expected_per_1000_shown", "n_held_out",
                  "events_held_out", "per_1000_held_out", "expected_per_1000_held_out", "difference_per_1000",
                  "ci_low_per_1000", "ci_high_per_1000", "alpha", "too_few", "exempt_tiers", "statement"])}
    if worklist:
        # Observational: the file says so in every row, as the report does beside the hold-out.
        tables["by_worklist_status"] = pd.DataFrame(
            [{"month": month, **row, "comparison": "observational, not causal"}
             for month, w in sorted(worklist.items()) for row in w["rows"]])
    return tables


_GROUP_COLUMNS = ["n", "n_events", "expected", "o_e_ratio", "o_e_ci_low", "o_e_ci_high", "auroc", "small"]


def render_monitoring(results, *, assessed, pending, context: dict, figures_png: dict[str, bytes],
                      worklist: dict | None = None) -> str:
    """The self-contained HTML monitoring report."""
    tables = monitoring_tables(results, assessed=assessed, pending=pending)
    by_month = {m.month: m for m in assessed}
    sections = []
    for r in results:
        sections.append({
            "r": r, "m": by_month[r.month], "h": r.headline,
            "tier": table(r.by("tier")[["tier", *_GROUP_COLUMNS]], digits={"expected": 1}),
            "practice": table(r.by("GP practice")[["GP practice", *_GROUP_COLUMNS]], digits={"expected": 1}),
            "n_small_practices": int(r.by("GP practice")["small"].sum()),
            "image": base64.b64encode(figures_png[r.month]).decode("ascii") if r.month in figures_png else None,
            "outcome": context["outcomes"][r.month], "horizon_days": context["horizons"][r.month],
            "worklist": (worklist or {}).get(r.month)})
    return environment().get_template("monitoring.html").render(
        c=context, months=table(tables["months"]), sections=sections, fmt=fmt,
        pending=tables["months"][tables["months"]["status"] != "assessed"].to_dict("records"))


def write_monitoring(out_dir: str | Path, results, *, assessed, pending, context: dict,
                     worklist: dict | None = None) -> Path:
    """Write ``report.html``, ``tables/*.csv``, ``figures/calibration_<month>.png`` and
    ``monitoring.json`` (one folder, atomically); ``worklist``: month -> outcomes by worklist status."""
    out_dir = Path(out_dir)
    figures_png = {}
    for r in results:
        if len(r.y) >= 10 and 0 < r.y.sum() < len(r.y):
            figures_png[r.month] = _png(plots.calibration_figure(r.y, {f"{r.month} as scored": r.risk}))
    tables = monitoring_tables(results, assessed=assessed, pending=pending, worklist=worklist)
    with atomic_path(out_dir, directory=True, kind="monitoring report") as tmp:
        tmp = Path(tmp)
        (tmp / "tables").mkdir()
        (tmp / "figures").mkdir()
        for name, frame in tables.items():
            frame.to_csv(tmp / "tables" / f"{name}.csv", index=False)
        for month, png in figures_png.items():
            (tmp / "figures" / f"calibration_{month}.png").write_bytes(png)
        html = render_monitoring(results, assessed=assessed, pending=pending, context=context, figures_png=figures_png,
                                 worklist=worklist)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        write_json({"context": context, "months": tables["months"].to_dict("records"),
                    "results": {r.month: {"counts": r.counts, "headline": r.headline, "holdout": r.holdout,
                                          **({"worklist": worklist[r.month]} if worklist and r.month in worklist
                                             else {})}
                                for r in results}}, tmp / "monitoring.json")
    return out_dir


__all__ = ["column_label", "figures_of", "fmt", "monitoring_tables", "render_card", "render_monitoring", "write_monitoring", "render_report", "table", "tables_of", "weak_groups", "write_card",
           "write_evaluation"]
