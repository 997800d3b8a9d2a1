"""The parts of the evaluation report and card a reviewer decides from, as words and tables: the verdict,
the design, the participant flow, Table 1, the conclusions the numbers allow, and the TRIPOD+AI checklist.

Pure: the evaluation, the gate's criteria and the run's context (:func:`riskstrat.pipelines.evaluate.run_evaluation`)
in; sentences and DataFrames out.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd
import yaml

from riskstrat.evaluation import gate as gates
from riskstrat.evaluation.metrics import MIN_EVENTS_FOR_INTERVAL, NOT_ESTIMABLE
from riskstrat.features.words import feature
from riskstrat.modeling.design import EXCLUSION_WORDS, NO_LABEL_WORDS

# The models of the comparison, in a reader's words ("candidate" is the model's own name in the report).
MODEL_WORDS = {"logistic": "logistic regression", "prior_use": "the prior use rule", "oracle": "the true risk",
               "champion": "the current champion"}
SPLIT_WORDS = {
    "person_and_date": "people were split once, by a seeded hash of their pseudonym, into training, calibration and "
                       "test groups; the model was tested on the test people at the later test date, so the tested "
                       "people were unseen in training (temporal and person validation)",
    "temporal_only": "everyone eligible at the test date was tested, including the people whose earlier rows trained "
                     "or calibrated the model (temporal validation only: weaker, as the model has seen these "
                     "people's earlier rows)"}
# Why a slope could not be estimated, by the code a flat metrics dict holds.
NOT_ESTIMABLE_WORDS = {float(code): words for words, code in NOT_ESTIMABLE.items()}


def model_words(name: str, model_name: str) -> str:
    """A model of the comparison as the report names it: the candidate by the registered name."""
    return model_name if name == "candidate" else MODEL_WORDS.get(name, name)


def _num(x, digits=3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}".replace("-", "\u2212")


def _group_words(attribute: str, group: str) -> str:
    """"age band 40-55" -> "age 40–55"; "sex female" -> "women"; others "attribute group"."""
    if attribute == "age band":
        return f"age {group.replace('-', '–')}"
    if attribute == "sex":
        return {"female": "women", "male": "men"}.get(group, f"sex {group}")
    if attribute == "GP practice":
        return f"practice {group}"
    return f"{attribute} {group}"


def failure_words(criterion) -> str:
    """A failed criterion in words: the gate's own detail, which names each failed group and its numbers."""
    return f"{criterion.name}: {criterion.detail}"


def status_words(status: dict | None, *, model_name: str, version: str) -> str:
    """The version's place in the registry: its aliases, a forced promotion (reason, who, when), its refit."""
    if status is None:
        return f"Its status in the registry could not be read."

    def one(s: dict, who: str) -> str:
        words = (f"{who} is {' and '.join(s['aliases'])}" if s["aliases"] else f"{who} has no alias")
        o = s.get("override")
        if o:
            words += (f"; it was promoted with --force, overriding the gate ({o.get('failed', 'criteria not recorded')} "
                      f"failed), by {o.get('user', 'an unrecorded user')} at {o.get('time', 'an unrecorded time')}: "
                      f"\u201c{o.get('reason', '')}\u201d")
        if s.get("degenerate"):
            words += f"; it is tagged degenerate ({s['degenerate']})"
        return words

    text = one(status, f"Version {version}")
    if status.get("refit"):
        text += (f". Its refit for deployment, version {status['refit']['version']} (the same settings fitted on "
                 f"later data, judged by this evaluation), " + one(status["refit"], "")[1:].lstrip())
    champion = (status.get("model_aliases") or {}).get("champion")
    if champion and champion != str(version) and champion != (status.get("refit") or {}).get("version"):
        text += f". The champion (producing the lists) is version {champion}"
    return text + "."


def verdict(criteria, evaluation, context: dict) -> dict:
    """The report's first line: ``passed`` (every criterion), ``failures`` (each in words with its group and
    numbers), ``n`` criteria, and ``status`` (the registry's, in words)."""
    criteria = list(criteria)
    failures = [failure_words(c) for c in criteria if not c.passed]
    return {"passed": bool(criteria) and not failures, "failures": failures, "n": len(criteria),
            "status": status_words(context.get("registry"), model_name=context["model_name"],
                                   version=str(context["model_version"]))}


def in_sample_warning(context: dict) -> str | None:
    """The first screen's warning when the people or dates evaluated are those the model was trained on."""
    o = context.get("training_overlap") or {}
    if not o:
        return None
    parts = []
    if o.get("time") in ("in-sample", "in-sample in time"):
        parts.append(f"the outcome period overlaps the model's training labels (which end {o.get('labels_end')})")
    if o.get("people") == "all" and o.get("n_seen"):
        parts.append(f"{o['n_seen']:,} of the {o['n_labelled']:,} people tested had earlier rows in its training or "
                     f"calibration data")
    if o.get("people") == "all" and not o.get("known"):
        parts.append("whether the people tested were in its training data is unknown")
    if not parts:
        return None
    unseen = context.get("unseen") or {}
    also = (f" The figures on the {unseen['n']:,} people it never saw are shown beside them."
            if unseen.get("headline") else "")
    return ("Evaluated on the data the model was trained on: " + "; ".join(parts)
            + ". These figures are temporal validation at best and flatter the model." + also)


def design_sentences(context: dict) -> list[str]:
    """The design section's paragraphs, from the model's own metadata (``context['design']``)."""
    d = context.get("design") or {}
    if not d:
        return ["The model records no design (trained before riskstrat recorded it)."]
    t, counts = d.get("training") or {}, d.get("counts") or {}
    out = []
    algo = d["algorithm"]
    if d.get("calibration"):
        algo += f", its probabilities calibrated by {d['calibration']} on a held-out calibration set of people"
    trees = f" ({d['trees']} trees after early stopping on the calibration rows)" if d.get("trees") else ""
    out.append(f"Algorithm: {algo}{trees}.")
    if t.get("index_dates"):
        rows = (f": {counts['train_rows']:,} training rows ({counts.get('train_people', 0):,} people) with "
                f"{counts.get('train_positive', 0):,} events, and {counts.get('calibration_rows', 0):,} calibration rows "
                f"with {counts.get('calibration_positive', 0):,} events" if counts.get("train_rows") else "")
        out.append(f"Training: {len(t['index_dates'])} index dates from {t['index_dates'][0]} to {t['index_dates'][-1]}"
                   f", each followed for {t.get('horizon_days')} days{rows}. A person contributes a row at each date "
                   f"they were eligible. The model's own test date was {t.get('test_date')}"
                   + (f" ({counts['test_rows']:,} people, {counts.get('test_positive', 0):,} events)."
                      if counts.get("test_rows") else "."))
    used = feature_meanings(context.get("features") or [])
    sources = sorted({s for s in used["source"] if s})
    if sources:
        absent = sorted(set(context.get("sources") or []) - set(sources) - {"persons"})
        out.append(f"Predictors: {len(used)} from {', '.join(sources)}"
                   + (f"; none from {', '.join(absent)}, which the evaluated data hold" if absent else "") + ".")
    split = (t.get("split") or {})
    if split.get("mode"):
        out.append(f"Split ({split['mode'].replace('_', ' ')}): {SPLIT_WORDS.get(split['mode'], split['mode'])}; "
                   f"fractions test {split.get('test_fraction')}, calibration {split.get('calibration_fraction')}, "
                   f"seed {split.get('seed')}.")
    if d.get("refit"):
        r = d["refit"]
        out.append(f"This version is a refit for deployment of version {r.get('of_version')}: the same settings and "
                   f"{r.get('trees')} trees fitted again on {len(r.get('dates', []))} index dates to "
                   f"{(r.get('dates') or ['?'])[-1]} (labels to the day before {r.get('labels_end')}); the figures "
                   f"above are of this version, the design's counts of the version it refits.")
    return out


def sample_size_sentences(context: dict) -> list[str]:
    """Events per candidate predictor and Riley et al. (2020)'s minimum sample size, in words."""
    d = context.get("design") or {}
    s = d.get("sample_size")
    if not s:
        return ["The training counts are not recorded, so the sample size cannot be checked."]
    c, counts = s["criteria"], d.get("counts") or {}
    rows, people = counts.get("train_rows", 0), counts.get("train_people", 0)
    enough = people >= s["n"]
    return [
        f"{d['candidate_predictors']} candidate predictors, {d['events_per_predictor']:.1f} training events per "
        f"candidate predictor (prevalence {s['prevalence']:.3f}).",
        f"Riley et al. (BMJ 2020) minimum sample size for a binary outcome with this prevalence and "
        f"{s['parameters']} parameters, assuming a Cox-Snell R\u00b2 of {s['r2_cs']:.3f} "
        + (f"({s['share_of_max']:.0%} of its largest possible value, {s['max_r2_cs']:.3f}: the authors' conservative "
           f"default when no earlier model reports one)" if s["r2_cs_assumed"] else "") +
        f": (i) shrinkage of at least 0.9 needs {c['shrinkage']:,}; (ii) optimism in R\u00b2 of at most 0.05 needs "
        f"{c['optimism']:,}; (iii) the overall risk within \u00b10.05 needs {c['intercept']:,}. The minimum is "
        f"{s['n']:,} people ({s['events']:,} events).",
        f"The training data had {people:,} people ({rows:,} person-date rows): "
        + ("enough by this criterion." if enough else
           "fewer than this minimum: expect overfitting and poorer calibration in new data.")
        + " Counting rows instead of people overstates the information, as one person's rows are alike; "
          "a tree ensemble has more effective parameters than its predictors, so the minimum is a lower bound."]


def tuning_sentence(context: dict) -> str:
    d = context.get("design") or {}
    params = d.get("parameters") or {}
    shown = ", ".join(f"{k} {v}" for k, v in params.items() if v is not None and k != "n_jobs")
    auto = d.get("auto") or []
    search = d.get("search") or {}
    if search.get("trials"):
        how = (f"chosen by an optuna search of {search['trials']} trials on a quarter of the training people held "
               f"back by person (never the calibration or test people)")
    elif search.get("enabled") is False:
        how = "as configured (no hyperparameter search)"
    else:
        how = "as configured (whether a search was run is not recorded)"
    return (f"Hyperparameters {how}: {shown or 'not recorded'}"
            + (f"; {', '.join(auto)} set by riskstrat's rule for the number of training rows" if auto else "") + ".")


def flow_table(context: dict) -> pd.DataFrame:
    """Participant flow: one column per index date (the model's training dates, then this evaluation)."""
    d = context.get("design") or {}
    flows = [*[(f"training {f['index_date']}" if "test" not in (f.get("rows") or {}) else f"model's test "
                f"{f['index_date']}", f) for f in d.get("flow") or []],
             (f"this evaluation {context['as_of']}", context.get("flow") or {})]
    rows = {}
    for label, f in flows:
        if not f:
            continue
        col = {"in the extract": f.get("in_extract")}
        for k, words in EXCLUSION_WORDS.items():
            col[f"excluded: {words}"] = (f.get("excluded") or {}).get(k)
        col["eligible"] = f.get("eligible")
        for k, words in NO_LABEL_WORDS.items():
            col[f"no label: {words}"] = (f.get("no_label") or {}).get(k)
        col["labelled"] = f.get("labelled")
        col["with the outcome"] = f.get("events")
        r = f.get("rows") or {}
        col["rows used: training"] = r.get("train")
        col["rows used: calibration"] = r.get("calibration")
        col["rows used: test"] = r.get("test")
        if "evaluated" in f:
            col["excluded: used in training or calibration"] = f.get("excluded_seen")
            col["evaluated"] = f.get("evaluated")
            col["evaluated, with the outcome"] = f.get("evaluated_events")
        rows[label] = col
    frame = pd.DataFrame(rows).dropna(how="all")
    # Whole numbers with separators; blank where a date has no such figure (e.g. no test rows at a training date).
    frame = frame.apply(lambda col: [f"{int(v):,}" if v == v and v is not None else "-" for v in col])
    return frame.rename_axis("people").reset_index()


def _cell(count, n) -> str:
    return "-" if count is None or not n else f"{count:,} ({count / n:.1%})"


def characteristics_table(context: dict) -> pd.DataFrame:
    """Table 1: the training people's characteristics (and the model's test's) against this evaluation's."""
    d = context.get("design") or {}
    columns = {f"training (rows at {len((d.get('training') or {}).get('index_dates') or [])} dates)":
               (d.get("characteristics") or {}).get("train"),
               "model's own test": (d.get("characteristics") or {}).get("test"),
               f"this evaluation ({context['as_of']})": context.get("characteristics")}
    columns = {k: v for k, v in columns.items() if v}
    keys: list[tuple[str, str]] = [("people", ""), ("age", "mean (SD)"), ("age", "median [IQR]")]
    for c in columns.values():
        for attr, levels in c.get("counts", {}).items():
            keys += [(attr, lvl) for lvl in levels if (attr, lvl) not in keys]
    out = {"characteristic": [k[0] for k in keys], "group": [k[1] for k in keys]}
    for label, c in columns.items():
        n, age, cells = c["n"], c.get("age") or {}, []
        for attr, lvl in keys:
            if attr == "people":
                cells.append(f"{n:,}")
            elif attr == "age":
                cells.append("-" if not age else (f"{age['mean']:.1f} ({age['sd']:.1f})" if lvl.startswith("mean")
                                                  else f"{age['median']:.0f} [{age['q1']:.0f}\u2013{age['q3']:.0f}]"))
            else:
                cells.append(_cell((c.get("counts", {}).get(attr) or {}).get(lvl, 0), n))
        out[label] = cells
    return pd.DataFrame(out)


def conclusions(evaluation, context: dict) -> list[str]:
    """What the numbers allow one to say, in words: each comparison's interval read against zero, the
    calibration overall and by tier, the weakest group, and how far the calibration curve's data reach."""
    name = context["model_name"]
    out = []
    for row in evaluation.comparison.itertuples():
        other = (context.get("against") or MODEL_WORDS["champion"]) if row.versus == "champion" else \
            MODEL_WORDS.get(row.versus, row.versus)
        nums = f"AUROC difference {_num(row.auroc_difference)}, 95% CI {_num(row.ci_low)} to {_num(row.ci_high)}"
        if row.versus == "oracle":
            if row.ci_high < 0:
                out.append(f"{name} ranks people less well than the true risk ({nums}): there is room to improve.")
            continue
        if row.ci_low > 0:
            out.append(f"{name} discriminates better than {other} ({nums}).")
        elif row.ci_high < 0:
            out.append(f"{name} discriminates worse than {other} ({nums}).")
        else:
            out.append(f"{name} is no better than {other} ({nums})" + (
                ": the simpler model would rank people as well." if row.versus in ("logistic", "prior_use")
                else ": the data cannot tell them apart."))
    gate = gate_settings(context)
    band = f"{gate.o_e_min:g}\u2013{gate.o_e_max:g}"
    c = evaluation.headline.loc["candidate"]
    out.append(slope_conclusion(c, gate))
    oe, oe_lo, oe_hi = c.get("o_e_ratio"), c.get("o_e_ci_low"), c.get("o_e_ci_high")
    if oe is not None and np.isfinite(oe):
        ci = f" (95% CI {_num(oe_lo, 2)} to {_num(oe_hi, 2)})" if _finite(oe_lo) and _finite(oe_hi) else ""
        where = ("the interval lies below 1: fewer events than predicted, the risks are too high" if _finite(oe_hi)
                 and oe_hi < 1 else "the interval lies above 1: more events than predicted, the risks are too low"
                 if _finite(oe_lo) and oe_lo > 1 else "the interval includes 1")
        out.append(f"Observed/expected overall {_num(oe, 2)}{ci}: {where}.")
    tiers = evaluation.oe_tier
    has_ci = {"o_e_ci_low", "o_e_ci_high"} <= set(tiers.columns)
    outside = tiers[(tiers["o_e_ratio"] < gate.o_e_min) | (tiers["o_e_ratio"] > gate.o_e_max)]
    if len(outside):
        worst = outside.iloc[(outside["o_e_ratio"] - 1).abs().argmax()]
        lo, hi = (worst["o_e_ci_low"], worst["o_e_ci_high"]) if has_ci else (np.nan, np.nan)
        shown = _finite(hi) and hi < gate.o_e_min or _finite(lo) and lo > gate.o_e_max
        ci = f", 95% CI {_num(lo, 2)} to {_num(hi, 2)}" if _finite(lo) and _finite(hi) else ""
        out.append(f"Calibration is weakest in the {worst['tier']} tier: {int(worst['observed']):,} events observed "
                   f"against {worst['expected']:.1f} expected (O/E {_num(worst['o_e_ratio'], 2)}{ci}, "
                   f"{int(worst['n']):,} people); "
                   + (f"its interval lies wholly outside {band}, so the lists show this tier's risks "
                      f"{'too high' if worst['o_e_ratio'] < 1 else 'too low'} (the gate's tier rule fails it)."
                      if shown else f"outside {band}, but its interval reaches that range, so it is not shown "
                      "miscalibrated (the gate's tier rule does not fail it)."))
    else:
        out.append(f"Every tier's observed/expected is within {band}.")
    reliable = evaluation.subgroups.reliable().reset_index().dropna(subset=["auroc"])
    if len(reliable):
        low = reliable.sort_values("auroc").iloc[0]
        overall = evaluation.subgroups.overall["auroc"]
        ci = (f", 95% CI {_num(low['auroc_ci_low'])} to {_num(low['auroc_ci_high'])}"
              if _finite(low.get("auroc_ci_low")) and _finite(low.get("auroc_ci_high")) else "")
        text = (f"The lowest AUROC of a group with enough events is {_group_words(low['attribute'], str(low['group']))}: "
                f"{_num(low['auroc'])}{ci}, against {_num(overall)} overall ({int(low['n_events']):,} events); "
                f"within a narrow band of a strong predictor such as age, discrimination is lower by construction")
        if _finite(low.get("reference_auroc")) and _finite(low.get("minus_reference_ci_high")):
            worse = low["minus_reference_ci_high"] < 0
            text += (f". In that group the prior use rule's AUROC is {_num(low['reference_auroc'])}, a difference of "
                     f"{_num(low['minus_reference'])} (95% CI {_num(low['minus_reference_ci_low'])} to "
                     f"{_num(low['minus_reference_ci_high'])}): "
                     + ("the model is shown worse than the prior use rule there (the gate fails it)." if worse else
                        "not shown worse than the prior use rule, which is what the gate asks within a group."))
        else:
            text += "."
        out.append(text)
    prob = evaluation.scores.get("candidate")
    if prob is not None and len(prob):
        p99 = float(np.quantile(prob, 0.99))
        above = int((prob > p99).sum())
        out.append(f"99% of people have a predicted risk of {p99:.2f} or less; the calibration curve above that rests on "
                   f"{above:,} people (see the histogram under it).")
    return out


def _finite(x) -> bool:
    try:
        return x is not None and bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def gate_settings(context: dict) -> gates.Gate:
    """The gate the evaluation was judged by (``context['gate']``), or the defaults when none is recorded."""
    return gates.Gate.model_validate(context.get("gate") or {})


def slope_conclusion(c, gate: gates.Gate) -> str:
    """The calibration slope in words, read as the gate reads it: its 90% interval against the range."""
    slope = c.get("calibration_slope")
    if not _finite(slope):
        reason = NOT_ESTIMABLE_WORDS.get(float(c.get("calibration_slope_not_estimable") or 0), "reason not recorded")
        return (f"The calibration slope cannot be estimated ({reason}): the model's spread of risks cannot be judged, "
                "and the gate fails it.")
    lo, hi = c.get("calibration_slope_ci_low"), c.get("calibration_slope_ci_high")
    rng = f"{gate.calibration_slope_min:g}\u2013{gate.calibration_slope_max:g}"
    if not (_finite(lo) and _finite(hi)):
        return f"Calibration slope {_num(slope, 2)} without an interval (too few events): it cannot be shown within {rng}."
    se = (hi - lo) / (2 * 1.959963984540054)
    lo90, hi90 = slope - 1.6448536269514722 * se, slope + 1.6448536269514722 * se
    shape = ("predictions too extreme (overfitted): the interval lies below 1" if hi < 1 else
             "predictions too moderate: the interval lies above 1" if lo > 1 else
             "the interval includes 1 (spread about right)")
    within = gate.calibration_slope_min <= lo90 and hi90 <= gate.calibration_slope_max
    return (f"Calibration slope {_num(slope, 2)} (95% CI {_num(lo, 2)} to {_num(hi, 2)}): {shape}; its 90% interval "
            f"({_num(lo90, 2)} to {_num(hi90, 2)}) " + ("lies within" if within else "does not lie within")
            + f" {rng}, so it is {'shown' if within else 'not shown'} to be good enough (the gate's rule).")


def gate_sentences(context: dict) -> list[str]:
    """What the gate asks, in words, from the settings the evaluation was judged by."""
    g = gate_settings(context)
    groups = context.get("min_group_events", 20)
    out = [
        f"Whole evaluation: at least {g.min_events:,} events; the calibration slope's 90% interval within "
        f"{g.calibration_slope_min:g}\u2013{g.calibration_slope_max:g} and observed/expected's exact Poisson 90% interval "
        f"within {g.o_e_min:g}\u2013{g.o_e_max:g}. The model must show it is good enough (an equivalence test, 5% each "
        "side): a point estimate inside the range with a wide interval fails. A slope that cannot be estimated fails.",
        f"Against the current champion, on the same people: the lower end of the paired 95% interval of the AUROC "
        f"difference must be at least \u2212{g.auroc_margin:g} (a non-inferiority margin), so an evaluation too small "
        "to show a difference does not pass for that reason.",
        ("Against the simpler model: prefer_simpler is on, so a candidate whose AUROC is not above logistic "
         "regression's beyond the paired interval fails." if g.prefer_simpler else
         "Against the simpler model: not gated (prefer_simpler is off); the conclusions say when the model is no "
         "better than logistic regression."),
        "Groups: " + "; ".join(filter(None, [
            f"each tier's O/E 95% interval must reach {g.o_e_min:g}\u2013{g.o_e_max:g}" if g.tiers else "",
            f"each age band, sex, deprivation quintile, ethnicity group and practice with at least {groups} events must "
            f"have an O/E 95% interval reaching {g.o_e_min:g}\u2013{g.o_e_max:g}" if g.subgroup_calibration else "",
            "each such group's AUROC must not be shown below the prior use rule's in that group (the paired 95% interval's upper "
            "end at least 0)" if g.subgroup_vs_prior_use else "",
            f"each group's AUROC upper 95% bound at least the overall AUROC \u2212 {g.subgroup_auroc_max_gap:g}"
            if g.subgroup_auroc_max_gap is not None else "",
            f"each group's AUROC upper 95% bound at least {g.min_subgroup_auroc:g}" if g.min_subgroup_auroc is not None
            else ""]))
        + ". A group fails only when it is shown unacceptable: a group has too few events for any model to show it "
          "acceptable. There is no absolute AUROC floor by default, because within a 15-year age band discrimination "
          "is lower by construction (age itself separates risk); what is fair to ask within a group is that the model "
          "ranks its people at least as well as the rule a practice would otherwise use, and that its risks are right "
          "for them.",
        "Timing: the evaluation date must be on or after the end of the model's last training label window, or its "
        "figures are in-sample. Each failed criterion names its group and its numbers; the settings are in "
        "models/<name>/gate.yaml (see models/README.md)."]
    return out


def measures_sentences(context: dict) -> list[str]:
    """How the figures are computed, in words (TRIPOD+AI 12e: the performance measures and their rationale)."""
    n_boot = context.get("n_boot")
    return [
        f"AUROC and AUPRC intervals: percentile bootstrap{f' of {n_boot:,} resamples' if n_boot else ''}, stratified by "
        f"outcome so every resample keeps the events' number (the resamples used are shown); no interval is shown "
        f"where there are fewer than {MIN_EVENTS_FOR_INTERVAL} events or non-events. Differences between models are "
        "paired (the same resamples of the same people).",
        "Calibration slope: logistic regression of the outcome on the logit of the predicted risk, with its Wald "
        "interval; reported as not estimable, with the reason, when the risk is constant or separates the outcome "
        "(an optimiser's starting value is never shown as a slope). Observed/expected (overall, by decile, by tier, "
        "by group): with an exact Poisson interval on the observed count. ICI: the mean absolute difference between "
        "the loess-smoothed observed risk and the predicted risk (Austin and Steyerberg 2019, not clipped).",
        "PPV, sensitivity and the events listed at a top-k cut-off count the people tied at the cut-off fractionally "
        "(the expected value under random tie-breaking), so they do not depend on the rows' order."]


def limitations(context: dict, evaluation) -> list[str]:
    """What limits these figures, from the run's own facts."""
    out = []
    warn = in_sample_warning(context)
    if warn:
        out.append(warn)
    if any("synth" in str(s) for s in [context.get("data_dir", "")]) or "oracle" in evaluation.scores:
        out.append("The data are synthetic (a true risk is known): the figures show the software works, not how "
                   "the model would perform on a real population.")
    if evaluation.n_events < 200:
        out.append(f"{evaluation.n_events:,} events: fewer than the 200 recommended for a precise calibration "
                   f"assessment at validation (Riley et al. 2021, Collins et al. 2016).")
    small = int(evaluation.subgroups.by_group["small"].sum())
    if small:
        out.append(f"{small} groups have fewer than {context['min_group_events']} events: their figures are shown "
                   f"but too uncertain to judge.")
    out.append("A single data source and period: performance may differ in other areas, under other coding "
               "practice, or after services change (monitor it).")
    out.append("Discrimination and calibration show that the model finds people at risk, not that a list helps them.")
    return out


def feature_meanings(names) -> pd.DataFrame:
    """Each feature the model uses with its meaning and when it is measured (blank for an unknown one)."""
    rows = []
    for n in names:
        try:
            f = feature(n)
            rows.append({"feature": n, "source": f.source, "meaning": f.description})
        except (KeyError, ValueError):
            rows.append({"feature": n, "source": "", "meaning": ""})
    return pd.DataFrame(rows, columns=["feature", "source", "meaning"])


@lru_cache(maxsize=1)
def tripod_items() -> list[dict]:
    """The TRIPOD+AI checklist (Collins et al., BMJ 2024;385:e078378) as data: each item's ``id``, ``section``,
    ``topic``, ``item`` (paraphrased), and either ``where`` (the report's anchor that answers it) or
    ``person`` (what a person must complete)."""
    text = resources.files("riskstrat.report").joinpath("tripod_ai.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["items"]
