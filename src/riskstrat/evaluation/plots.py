"""Evaluation figures: ROC, precision-recall, calibration by decile, PPV by list size, SHAP summary and dependence.

Each function takes data, computes through :mod:`riskstrat.evaluation.metrics` (or scikit-learn's curve
functions) and returns a ``matplotlib.figure.Figure``; :func:`save_figure` writes it out.
matplotlib is imported inside the functions so the core package does not need it loaded.
Figures are drawn on an Agg canvas without going through pyplot, so building one neither
opens a window nor changes the session's backend, and nothing accumulates in pyplot's registry.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from riskstrat.evaluation import metrics
from riskstrat.modeling.config import CALIBRATION_BAND_RESAMPLES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["calibration_band", "calibration_figure", "decision_curve_figure", "dependence_figure", "pr_figure", "roc_figure", "save_figure",
           "shap_summary_figure", "smoothed_calibration_figure", "topk_ppv_figure"]

_FIGSIZE = (6.0, 5.0)


def _new_figure() -> tuple[Figure, Axes]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=_FIGSIZE, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _check_models(models: Mapping[str, object], what: str) -> None:
    if not models:
        raise ValueError(f"{what} is empty: give at least one model as {{name: array}}")


def roc_figure(y_true, scores: Mapping[str, Sequence[float]]) -> Figure:
    """ROC curves of several models on one axes, AUROC in the legend, chance diagonal dashed.

    Lines: one per model plus the diagonal.
    Example: ``roc_figure(y, {"logistic": p_lr, "lightgbm": p_gbm})``.
    """
    from sklearn.metrics import roc_curve

    _check_models(scores, "scores")
    fig, ax = _new_figure()
    for name, score in scores.items():
        value = metrics.auroc(y_true, score)
        fpr, tpr, _ = roc_curve(np.asarray(y_true), np.asarray(score, dtype=float))
        ax.plot(fpr, tpr, label=f"{name} (AUROC {value:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.set(xlabel="False positive rate (1 - specificity)",
           ylabel="True positive rate (sensitivity)",
           xlim=(0, 1), ylim=(0, 1.01), title="ROC curve")
    ax.legend(loc="lower right")
    return fig


def pr_figure(y_true, scores: Mapping[str, Sequence[float]]) -> Figure:
    """Precision-recall curves of several models, AUPRC in the legend, prevalence line dashed.

    Lines: one per model plus the prevalence (the precision of a random list).
    Example: ``pr_figure(y, {"logistic": p_lr, "lightgbm": p_gbm})``.
    """
    from sklearn.metrics import precision_recall_curve

    _check_models(scores, "scores")
    fig, ax = _new_figure()
    for name, score in scores.items():
        value = metrics.auprc(y_true, score)
        precision, recall, _ = precision_recall_curve(
            np.asarray(y_true), np.asarray(score, dtype=float)
        )
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AUPRC {value:.3f})")
    prevalence = float(np.mean(np.asarray(y_true, dtype=float)))
    ax.axhline(prevalence, linestyle="--", color="grey", linewidth=1,
               label=f"prevalence ({prevalence:.1%})")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", xlim=(0, 1), ylim=(0, 1.01),
           title="Precision-recall curve")
    ax.legend(loc="upper right")
    return fig


def calibration_figure(y_true, probs: Mapping[str, Sequence[float]], *, n_bins: int = 10) -> Figure:
    """Observed against predicted event rate by risk decile for several models, with the diagonal.

    Points are the mean predicted and observed rates in equal-size rank groups
    (:func:`riskstrat.evaluation.metrics.observed_expected_by_decile`); log axes would hide the low deciles
    where most people are, so both axes are linear. Lines: one per model plus the diagonal.
    Example: ``calibration_figure(y, {"raw": p_raw, "recalibrated": p_cal})``.
    """
    _check_models(probs, "probs")
    fig, ax = _new_figure()
    top = 0.0
    for name, prob in probs.items():
        table = metrics.observed_expected_by_decile(y_true, prob, n_bins=n_bins)
        slope = metrics.calibration_slope(y_true, prob)
        ax.plot(table["expected_rate"], table["observed_rate"], marker="o",
                label=f"{name} (slope {slope:.2f})")
        top = max(top, table["expected_rate"].max(), table["observed_rate"].max())
    top = min(1.0, top * 1.05) if top > 0 else 1.0
    ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set(xlabel="Predicted risk (mean in group)", ylabel="Observed rate (in group)",
           xlim=(0, top), ylim=(0, top), title=f"Calibration by risk group ({n_bins} groups)")
    ax.legend(loc="upper left")
    return fig


def topk_ppv_figure(
    y_true,
    scores: Mapping[str, Sequence[float]],
    *,
    fractions: Sequence[float] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
) -> Figure:
    """PPV of a case-finding list against its size (% of the population listed), per model.

    Lines: one per model plus the prevalence (the PPV of a random list of any size).
    Example: ``topk_ppv_figure(y, {"lightgbm": p_gbm}, fractions=(0.01, 0.05))``.
    """
    _check_models(scores, "scores")
    if not fractions:
        raise ValueError("fractions is empty")
    fractions = sorted(fractions)
    percent = [f * 100 for f in fractions]
    fig, ax = _new_figure()
    for name, score in scores.items():
        ppv = [metrics.ppv_at_top(y_true, score, fraction=f) for f in fractions]
        ax.plot(percent, ppv, marker="o", label=name)
    prevalence = float(np.mean(np.asarray(y_true, dtype=float)))
    ax.axhline(prevalence, linestyle="--", color="grey", linewidth=1,
               label=f"prevalence ({prevalence:.1%})")
    ax.set_xscale("log")
    ax.set_xticks(percent, labels=[f"{p:g}%" for p in percent])
    ax.minorticks_off()
    ax.set(xlabel="List size (top % of population by risk)", ylabel="PPV (share with the event)",
           ylim=(0, 1.01), title="PPV by list size")
    ax.legend(loc="upper right")
    return fig


def calibration_band(y_true, y_prob, *, n_boot: int = 100, level: float = 0.95, seed: int = 0):
    """The smoothed calibration curve (:func:`riskstrat.evaluation.metrics.smoothed_calibration`) with a
    pointwise bootstrap band: resamples of the people drawn within each outcome (stratified, so every
    resample has the same events), each curve read at the original curve's points within the risks it
    pooled (NaN beyond: past the last few people the band stops, while the curve goes on).

    Returns ``(curve, low, high)``: the curve's frame and the band's arrays.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_prob, dtype=float)
    curve = metrics.smoothed_calibration(y, p)
    grid = curve["predicted"].to_numpy()
    rng = np.random.default_rng(seed)
    cases, controls = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    curves = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(cases, len(cases)), rng.choice(controls, len(controls))])
        c = metrics.smoothed_calibration(y[idx], p[idx], n_bins=500)  # coarser pooling: the resamples stay quick
        x = c["predicted"].to_numpy()
        # Read only within the resample's own pooled risks: no band is drawn past the data it rests on.
        curves.append(np.where((grid >= x.min()) & (grid <= x.max()), np.interp(grid, x, c["observed"].to_numpy()),
                               np.nan))
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points past the data: no band there
        low, high = (np.nanpercentile(np.vstack(curves), [tail, 100 - tail], axis=0) if curves
                     else (grid * np.nan,) * 2)
    return curve, low, high


def smoothed_calibration_figure(y_true, y_prob, *, n_boot: int = CALIBRATION_BAND_RESAMPLES, seed: int = 0) -> Figure:
    """The smoothed (loess) calibration curve with its 95% bootstrap band (:func:`calibration_band` with
    ``n_boot`` resamples; none at 0), the decile points and the diagonal, ICI in the title; beneath it, a
    histogram of the predicted risks on the same axis, so a reader sees how many people each part of the
    curve rests on.

    Lines: the curve, the deciles (points) and the diagonal.
    Example: ``smoothed_calibration_figure(y, p)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve, low, high = calibration_band(y_true, y_prob, n_boot=n_boot, seed=seed)
    deciles = metrics.observed_expected_by_decile(y_true, y_prob)
    ici = metrics.integrated_calibration_index(y_true, y_prob)
    fig = Figure(figsize=(_FIGSIZE[0], _FIGSIZE[1] * 1.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    banded = bool(np.isfinite(high).any())  # no band with 0 resamples (evaluation.calibration_band_resamples)
    if banded:
        ax.fill_between(curve["predicted"], low, high, alpha=0.25, linewidth=0, label="95% band (bootstrap)")
    ax.plot(curve["predicted"], curve["observed"], label="smoothed (loess)")
    ax.plot(deciles["expected_rate"], deciles["observed_rate"], marker="o", linestyle="none", label="deciles")
    top = float(np.nanmax([curve["predicted"].max(), curve["observed"].max(), deciles["observed_rate"].max(),
                           np.nanmax(high) if banded else 0]))
    top = min(1.0, top * 1.05) if top > 0 else 1.0
    ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set(ylabel="Observed rate", xlim=(0, top), ylim=(0, top), title=f"Calibration (ICI {ici:.4f})")
    ax.legend(loc="upper left")
    hist.hist(np.asarray(y_prob, dtype=float), bins=np.linspace(0, top, 41), color="#4c72b0")
    hist.set(xlabel="Predicted risk", ylabel="People")
    return fig


def decision_curve_figure(table) -> Figure:
    """Net benefit by threshold for the model, flagging everyone and flagging no one
    (a :func:`riskstrat.evaluation.metrics.decision_curve` table).

    Lines: model, all, none.
    """
    fig, ax = _new_figure()
    ax.plot(table["threshold"], table["net_benefit_model"], label="model")
    ax.plot(table["threshold"], table["net_benefit_all"], linestyle=":", label="flag everyone")
    ax.plot(table["threshold"], table["net_benefit_none"], linestyle="--", color="grey", linewidth=1,
            label="flag no one")
    high = float(max(table["net_benefit_model"].max(), table["net_benefit_all"].max(), 0.0))
    ax.set(xlabel="Threshold probability", ylabel="Net benefit", ylim=(-0.05 * max(high, 0.01), high * 1.1 or 0.01),
           title="Decision curve")
    ax.legend(loc="upper right")
    return fig


def dependence_figure(values, shap_values, *, feature: str, note: str | None = None) -> Figure:
    """A feature's value against its SHAP contribution (log-odds), one point per person in the sample;
    ``feature`` names it on the axes, ``note`` (e.g. the sample's size) goes under the title.

    Example: ``dependence_figure(X["age"], shap["age"], feature="Age (years)")``.
    """
    import textwrap

    x = np.asarray(values, dtype=float)
    fig, ax = _new_figure()
    ax.scatter(x, np.asarray(shap_values, dtype=float), s=6, alpha=0.4)
    ax.axhline(0, linestyle="--", color="grey", linewidth=1)
    xlabel = feature
    if _long_tailed(x):
        # Costs and counts pile up near zero under a long tail: a linear axis shows one column of points.
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=-0.3)  # no empty negative half
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        xlabel = f"{feature} (symmetric log scale)"
    ax.set(xlabel=textwrap.fill(xlabel, 60), ylabel="SHAP value (log-odds)")
    # The note under the title, not on the axes, where it could hide points.
    ax.set_title(textwrap.fill(f"Dependence: {feature}", 55) + (f"\n{textwrap.fill(note, 70)}" if note else ""),
                 fontsize=10)
    return fig


def shap_summary_figure(values, data, *, labels: Mapping[str, str] | None = None, max_display: int = 12,
                        note: str | None = None) -> Figure:
    """SHAP summary (beeswarm) plot: one row per feature, largest mean |SHAP| first (the rest summed in
    the last row), one dot per person placed by their SHAP value (log-odds) and coloured by their
    value of the feature; drawn by ``shap.plots.beeswarm`` on an Agg canvas.

    ``values`` and ``data`` are frames with a column per feature (the same columns); ``labels`` maps
    column names to what the plot shows; ``note`` (e.g. the sample's size) goes under the title.
    Example: ``shap_summary_figure(shap_df, X, labels={"age": "Age (years)"})``.
    """
    import textwrap

    import shap
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = labels or {}
    # At most two lines a label, so the rows keep apart.
    names = [textwrap.fill(textwrap.shorten(labels.get(c, c), 80, placeholder="..."), 42) for c in values.columns]
    explanation = shap.Explanation(values=np.asarray(values, dtype=float), data=np.asarray(data, dtype=float),
                                   feature_names=names)
    rows = min(max_display, values.shape[1])
    fig = Figure(figsize=(9.0, 0.42 * rows + 1.9), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # ax given (and plot_size None): shap draws on this figure, not on pyplot's current one.
    shap.plots.beeswarm(explanation, max_display=max_display, ax=ax, show=False, plot_size=None,
                        color_bar_label="Feature value (low to high)")
    ax.tick_params("y", labelsize=9, length=4)
    ax.set_xlabel("SHAP value: change in the log-odds of the outcome (right: higher risk)", fontsize=10)
    ax.set_title("How the model uses each feature (SHAP)" + (f"\n{note}" if note else ""), fontsize=11)
    return fig


def _long_tailed(x: np.ndarray) -> bool:
    """Non-negative values whose 99th centile is more than 20 times their median (or 20, if the median is below 1)."""
    finite = x[np.isfinite(x)]
    if not len(finite) or finite.min() < 0:
        return False
    return bool(np.quantile(finite, 0.99) > 20 * max(float(np.quantile(finite, 0.5)), 1.0))


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it in pyplot; returns the path.

    The PNG goes to a temporary file in the same directory and is renamed over ``path``, so a
    reader never sees a half-written image.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    finally:
        _close(fig)
    return path


def _close(fig: Figure) -> None:
    # Figures made here are not registered with pyplot; ones made with plt.subplots() are, and
    # must be released there or pyplot keeps them alive.
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
