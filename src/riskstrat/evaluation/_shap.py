"""SHAP on a sample of the evaluated people, for the report's summary (beeswarm) and dependence plots.

The values come from the ``shap`` package's ``TreeExplainer`` and are checked against LightGBM's own
``pred_contrib`` (what the lists' reasons use) on the first rows of the sample, so the figures show
the contributions the reasons are made of. The sample keeps no person identifier: its rows are
numbered 0..n-1.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrat.evaluation import plots
from riskstrat.features.words import feature

SAMPLE_SIZE = 2000
CHECK_ROWS = 200        # rows on which TreeExplainer is checked against pred_contrib (each costs as much again)
TOLERANCE = 1e-9        # log-odds

# Features whose description reads long where a plot has one line (the others: their description, shortened).
_SHORT = {"age": "Age (years)", "sex_female": "Female (1) or not (0)",
          "deprivation_decile": "Deprivation decile (1 = most deprived)",
          "days_since_ae": "Days since the last A&E attendance", "vaccinations_12m": "Vaccinations in the last 12 months"}
_TREND = re.compile(r"^Generic trend: (?P<noun>.+) in the last (?P<a>\d+) days minus those of days (?P<b>\d+-\d+)")
_REWORDED = ((re.compile(r"^Has (.+) on the long-term-condition register$"), r"\1 (long-term condition)"),
             (re.compile(r"^Prescription items for (.+) \(BNF chapter \d+\) (.+)$"), r"\1 prescription items \2"),
             (re.compile(r"\s*\((?:[^()]{21,}|[^()]*if none)\)"), ""),  # long asides go; "(did not attend)" stays
             (re.compile(r" in the longest window$"), ""))


def feature_label(name: str) -> str:
    """A feature's name as a short phrase for a plot: its description without the long asides; a
    feature riskstrat does not know (a custom model's) keeps its name.

    >>> feature_label("ae_attendances__urgent_care__count_90d")
    'Urgent-care visits in the last 90 days'
    >>> feature_label("days_since_emergency_admission"), feature_label("ltc_copd")
    ('Days since the last emergency admission', 'COPD (long-term condition)')
    """

    if name in _SHORT:
        return _SHORT[name]
    try:
        words = feature(name).description
    except (KeyError, ValueError):
        return name
    trend = _TREND.match(words)
    if trend:
        return f"Trend in {trend['noun']}: last {trend['a']} days against days {trend['b']}"
    words = words.removeprefix("Generic: ").split(": ")[0].rstrip(".")
    for pattern, replacement in _REWORDED:
        words = pattern.sub(replacement, words)
    return words[:1].upper() + words[1:]


def feature_labels(names) -> dict[str, str]:
    """:func:`feature_label` of each name, made unique (a repeated label gets its name in brackets)."""
    labels = {n: feature_label(n) for n in names}
    counts = pd.Series(list(labels.values())).value_counts()
    return {n: (f"{label} ({n})" if counts[label] > 1 else label) for n, label in labels.items()}


@dataclass(frozen=True)
class ShapSample:
    """SHAP values (log-odds) of a seeded sample of people, with their feature values.

    ``values`` and ``data`` have one row a sampled person, numbered 0..n-1 (no person id), and one
    column a feature. ``max_difference`` is the largest absolute difference between ``shap``'s
    TreeExplainer and LightGBM's ``pred_contrib`` on the ``checked`` rows.
    """

    values: pd.DataFrame
    data: pd.DataFrame
    base_value: float
    n_people: int            # the people sampled from
    shap_version: str
    checked: int
    max_difference: float

    @property
    def agrees(self) -> bool:
        """Whether TreeExplainer equalled LightGBM's ``pred_contrib`` (to 1e-9) on the rows checked."""
        return self.max_difference <= TOLERANCE

    @property
    def n(self) -> int:
        return len(self.values)

    def mean_abs(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        return self.values.abs().mean().sort_values(ascending=False, kind="stable")

    def describe(self) -> dict:
        """What the report and ``evaluation.json`` say about the sample (counts only)."""
        return {"n_sample": self.n, "n_people": self.n_people, "shap_version": self.shap_version,
                "checked_rows": self.checked, "max_difference": self.max_difference, "agrees": self.agrees}


def shap_sample(risk_model, X: pd.DataFrame, *, n: int = SAMPLE_SIZE, seed: int = 0,
                check_rows: int = CHECK_ROWS, stage=lambda m: None) -> ShapSample | None:
    """SHAP values of a LightGBM ``risk_model`` (:class:`riskstrat.modeling.models.RiskModel`) on a sample of
    ``n`` rows of ``X`` drawn with ``seed``, by ``shap.TreeExplainer``; None for another kind of model.

    Should TreeExplainer differ from LightGBM's ``pred_contrib`` by more than 1e-9 on the rows
    checked (a change in either library), LightGBM's values are used and ``stage`` says so.
    """
    if risk_model.kind != "lightgbm" or not len(X):
        return None
    import shap

    sample = X.sample(min(n, len(X)), random_state=seed)
    matrix = risk_model.feature_matrix(sample)
    data = pd.DataFrame(matrix, columns=risk_model.feature_names)  # numbered rows: the ids stay behind
    booster = risk_model.estimator.booster_
    explainer = shap.TreeExplainer(booster)
    with warnings.catch_warnings():  # a notice of an old change of shap's output format, on every call
        warnings.filterwarnings("ignore", message="LightGBM binary classifier with TreeExplainer", category=UserWarning)
        values = np.asarray(explainer.shap_values(data), dtype="float64")
    if values.ndim == 3:  # (rows, features, classes) in some shap versions: the positive class
        values = values[..., -1]
    base = float(np.ravel(explainer.expected_value)[-1])
    checked = min(check_rows, len(data))
    native = booster.predict(matrix[:checked], pred_contrib=True)
    difference = float(np.max(np.abs(values[:checked] - native[:, :-1]), initial=0.0))
    if not difference <= TOLERANCE:
        stage(f"warning: shap {shap.__version__}'s TreeExplainer differs from LightGBM's pred_contrib by "
              f"{difference:.2g} (log-odds) on this model: the report's SHAP figures use LightGBM's values")
        native = booster.predict(matrix, pred_contrib=True)
        values, base = native[:, :-1], float(native[0, -1])
    return ShapSample(pd.DataFrame(values, columns=risk_model.feature_names), data, base, len(X),
                      shap.__version__, checked, difference)


def shap_figures(sample: ShapSample, *, n_dependence: int = 3, max_display: int = 12) -> dict:
    """The summary (beeswarm) figure and the dependence figures of the ``n_dependence`` features with
    the largest mean |SHAP|, by file stem: ``shap_summary``, ``dependence_<feature>``."""

    labels = feature_labels(sample.values.columns)
    note = f"each dot one person of a random sample of {sample.n:,} of the {sample.n_people:,} evaluated"
    figures = {"shap_summary": plots.shap_summary_figure(sample.values, sample.data, labels=labels,
                                                         max_display=max_display, note=note)}
    for name in sample.mean_abs().index[:n_dependence]:
        figures[f"dependence_{name}"] = plots.dependence_figure(sample.data[name], sample.values[name],
                                                                feature=labels[name], note=note)
    return figures
