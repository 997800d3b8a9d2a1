"""What a study's design section states, as numbers: the participant flow at an index date, the
characteristics of a population (Table 1) and Riley et al.'s minimum sample size.

Pure functions on DataFrames; aggregates only (counts, means, shares), never a person. Training
records them in the model's metadata (``training_summary``) and the evaluation report puts the
evaluated population's beside them (TRIPOD+AI items 10, 20a-c).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from riskstrat.features.clinical import cohort_rules

__all__ = ["EXCLUSION_WORDS", "NO_LABEL_WORDS", "characteristics", "participant_flow", "minimum_sample_size",
           "max_r2_cs"]

# The cohort's rules (riskstrat.features.clinical.cohort_rules) in a reader's words, in the order they are counted.
EXCLUSION_WORDS = {"died": "died before the index date", "not_registered": "not registered on the index date",
                   "born_after_date": "born after the index date", "younger_than_min_age": "younger than the minimum age",
                   "older_than_max_age": "older than the maximum age"}
NO_LABEL_WORDS = {"censored": "registration ended before the end of follow-up (censored)",
                  "died_without_event": "died during follow-up without the outcome (the outcome's death rule "
                                        "excludes them)",
                  "not_at_risk": "not at risk of the outcome on the index date"}


def participant_flow(persons: pd.DataFrame, index_date, eligible: pd.Index, labels: pd.Series, *,
                     horizon_days: int, min_age: float = 18, max_age: float = 120) -> dict:
    """The people of ``persons`` at ``index_date``: everyone in the extract, those the cohort's rules
    excluded (by the first rule that applies), the ``eligible`` (the feature frame's index), those
    without a label by reason and the labelled, with their events.

    ``labels`` holds 1.0 / 0.0 / NaN for the eligible (the outcome's ``labels``). A person without a
    label is *censored* when their registration ended before the follow-up did, *died without the
    event* when they died in the follow-up (an outcome that excludes deaths), else *not at risk*.
    """
    t = pd.Timestamp(index_date)
    rules, _ = cohort_rules(persons, t, min_age=min_age, max_age=max_age)
    excluded, taken = {}, np.zeros(len(persons), bool)
    for name, hit in rules.items():  # counted by the first rule that applies
        excluded[name] = int((hit & ~taken).sum())
        taken |= hit
    labels = pd.Series(labels).reindex(eligible)
    missing = labels.isna().to_numpy()
    p = persons.set_index("person_id").reindex(eligible)
    end = t + pd.Timedelta(days=int(horizon_days) - 1)
    censored = missing & (p["registration_end"].notna() & (p["registration_end"] < end)).to_numpy()
    died = missing & ~censored & p["death_date"].between(t, end).to_numpy()
    return {"index_date": str(t.date()), "in_extract": int(len(persons)),
            "excluded": excluded, "eligible": int(len(eligible)),
            "no_label": {"censored": int(censored.sum()), "died_without_event": int(died.sum()),
                         "not_at_risk": int((missing & ~censored & ~died).sum())},
            "labelled": int((~missing).sum()), "events": int(np.nansum(labels.to_numpy(dtype=float)))}


def characteristics(frame: pd.DataFrame, y) -> dict:
    """Table 1 of a population, as aggregates: people, age (mean, SD, median, quartiles), women,
    deprivation quintile, ethnicity group, prior use (an emergency admission in the past year) and
    the outcome, as counts (``{"n": ..., "age": {...}, "counts": {characteristic: {level: count}}}``).

    ``frame`` holds the feature frame's columns (``age``, ``sex`` or ``sex_female``,
    ``deprivation_decile``, ``ethnicity_group``, ``emergency_admissions_0_3m`` and ``_3_12m``), ``y``
    the 0/1 outcome of each row. A column the frame lacks is left out.
    """
    y = np.asarray(y, dtype=float)
    n = len(frame)
    out: dict = {"n": int(n), "counts": {}}
    if "age" in frame and n:
        age = frame["age"].astype(float)
        q1, median, q3 = np.nanpercentile(age, [25, 50, 75])
        out["age"] = {"mean": float(age.mean()), "sd": float(age.std()), "median": float(median),
                      "q1": float(q1), "q3": float(q3)}
    counts = out["counts"]
    if "sex" in frame:
        counts["sex"] = _levels(frame["sex"])
    elif "sex_female" in frame:
        female = frame["sex_female"].astype(float)
        counts["sex"] = {"female": int((female == 1).sum()), "male": int((female == 0).sum()),
                         **({"unknown": int(female.isna().sum())} if female.isna().any() else {})}
    if "deprivation_decile" in frame:
        d = np.ceil(frame["deprivation_decile"].astype(float).to_numpy() / 2)
        names = {1.0: "1 (most deprived)", 2.0: "2", 3.0: "3", 4.0: "4", 5.0: "5 (least deprived)"}
        counts["deprivation quintile"] = _levels(pd.Series([names.get(v, "unknown") for v in d]))
    if "ethnicity_group" in frame:
        counts["ethnicity group"] = _levels(frame["ethnicity_group"])
    admissions = [c for c in ("emergency_admissions_0_3m", "emergency_admissions_3_12m") if c in frame]
    if admissions:
        past = frame[admissions].fillna(0).sum(axis=1).to_numpy() > 0
        counts["prior use"] = {"an emergency admission in the past year": int(past.sum())}
    counts["outcome"] = {"with the outcome": int(np.nansum(y))}
    return out


def _levels(values: pd.Series) -> dict[str, int]:
    text = values.astype(object).where(values.notna(), "unknown").astype(str)
    return {str(k): int(v) for k, v in text.value_counts().sort_index().items()}


def max_r2_cs(prevalence: float) -> float:
    """The largest Cox-Snell R² a model of a binary outcome with this prevalence can reach:
    ``1 - exp(2 (p ln p + (1 - p) ln(1 - p)))`` (Riley et al. 2020).

    >>> round(max_r2_cs(0.174), 3)
    0.603
    """
    p = float(prevalence)
    if not 0 < p < 1:
        raise ValueError(f"prevalence must be between 0 and 1, got {p}")
    return 1 - math.exp(2 * (p * math.log(p) + (1 - p) * math.log(1 - p)))


def minimum_sample_size(prevalence: float, parameters: int, *, r2_cs: float | None = None,
                        share_of_max: float = 0.15, shrinkage: float = 0.9, optimism: float = 0.05,
                        margin: float = 0.05) -> dict:
    """Riley et al. (BMJ 2020;368:m441) minimum sample size for developing a model of a binary
    outcome with ``parameters`` candidate predictor parameters, the largest of three criteria:

    (i) expected uniform shrinkage of at least ``shrinkage`` (0.9):
    ``n = P / ((S - 1) ln(1 - R²cs / S))``;
    (ii) a difference of at most ``optimism`` (0.05) between the apparent and adjusted Nagelkerke
    R², i.e. (i) with ``S = R²cs / (R²cs + optimism * max R²cs)``;
    (iii) the overall risk (intercept) estimated within ``margin`` (0.05):
    ``n = (1.96 / margin)² p (1 - p)``.

    ``r2_cs`` is the anticipated Cox-Snell R²; without one, ``share_of_max`` (15%, Riley et al.'s
    conservative default) of :func:`max_r2_cs`. The example of the paper's software (pmsampsize,
    R²cs 0.288, 24 parameters, prevalence 0.174) needs 623, 662 and 221 people:

    >>> s = minimum_sample_size(0.174, 24, r2_cs=0.288)
    >>> s["criteria"], s["n"], s["events"]
    ({'shrinkage': 623, 'optimism': 662, 'intercept': 221}, 662, 116)
    """
    p, params = float(prevalence), int(parameters)
    if params < 1:
        raise ValueError(f"parameters must be at least 1, got {params}")
    max_r2 = max_r2_cs(p)
    assumed = share_of_max * max_r2 if r2_cs is None else float(r2_cs)
    if not 0 < assumed < max_r2:
        raise ValueError(f"r2_cs must be between 0 and the largest Cox-Snell R² for prevalence {p} ({max_r2:.3f})")

    def by_shrinkage(s: float) -> int:
        return math.ceil(params / ((s - 1) * math.log(1 - assumed / s)))

    s_optimism = assumed / (assumed + optimism * max_r2)
    criteria = {"shrinkage": by_shrinkage(shrinkage), "optimism": by_shrinkage(s_optimism),
                "intercept": math.ceil((1.96 / margin) ** 2 * p * (1 - p))}
    n = max(criteria.values())
    return {"criteria": criteria, "n": n, "events": math.ceil(n * p), "events_per_parameter": n * p / params,
            "prevalence": p, "parameters": params, "r2_cs": assumed, "max_r2_cs": max_r2,
            "r2_cs_assumed": r2_cs is None, "share_of_max": share_of_max, "shrinkage": max(shrinkage, s_optimism)
            if criteria["optimism"] >= criteria["shrinkage"] else shrinkage}
