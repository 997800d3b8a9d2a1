"""Whether loaded models can score this data: the features they were trained on, built as then.

Each check refuses before anything is scored or written: a model whose feature definitions this code
cannot build (:class:`FeatureSpecMismatchError`), data that lack a source a model reads, or hold it
with no rows (:class:`ModelDataMismatchError`). Scoring and evaluation run them alike.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from riskstrat.quiet import no_stage
from riskstrat.errors import RiskstratError
from riskstrat.features.words import feature
from riskstrat.features.spec import CLINICAL, FeatureSpec, FeatureSpecError, spec_hash

__all__ = ["FeatureSpecMismatchError", "ModelDataMismatchError", "check_feature_spec", "check_features_match",
           "check_sources_have_rows", "models_spec"]

Stage = Callable[[str], None]


class ModelDataMismatchError(RiskstratError, ValueError):
    """The data cannot give the features a model was trained on."""


class FeatureSpecMismatchError(RiskstratError):
    """A model was trained on feature definitions other than the running code's (a refusal: exit 2)."""


def check_feature_spec(loaded, *, stage: Stage = no_stage):
    """The features a loaded model (:class:`riskstrat.registry.tracking.LoadedModel`) was trained on, as a
    :class:`riskstrat.features.spec.FeatureSpec` that scoring builds exactly: its stored spec
    (``feature_spec`` in its metadata), or, for a model trained before specs were stored, the clinical
    spec when its ``feature_spec_hash`` is this code's :func:`riskstrat.features.spec.spec_hash`.

    Refuses (:class:`FeatureSpecMismatchError`) a spec this code cannot build (another derive version, a
    spec changed since training) and an old model whose hash differs from this code's. A model trained
    before the hash was recorded is let through with a warning (``stage``), with the clinical spec.

    No override: the features would be computed in a way the model never saw, with nothing to show for
    it in the risks; the remedy always exists (retrain, or run the version that trained the model).
    """
    meta = loaded.risk_model.metadata
    trained, running = meta.get("feature_spec_hash"), spec_hash()
    what = f"{loaded.name} version {loaded.version}"
    by = f"riskstrat {meta['riskstrat_version']}" if meta.get("riskstrat_version") else "the version that trained it"
    stored = meta.get("feature_spec")
    if stored is not None:
        try:
            spec = FeatureSpec.from_dict(stored, what=f"the feature spec of {what}")
        except FeatureSpecError as exc:
            raise FeatureSpecMismatchError(
                f"{what} was trained on features defined differently from this version of riskstrat ({exc}): its "
                f"risks would come from features it never saw. Retrain it with this version (riskstrat train, then "
                f"evaluate and promote), or use {by} to score with it. Nothing was written") from None
        if trained is not None and trained != spec.hash():
            raise FeatureSpecMismatchError(
                f"{what}: its stored feature spec (hash {spec.hash()}) is not the one it records ({trained}); retrain "
                f"it. Nothing was written")
        return spec
    if trained is None:
        stage(f"warning: {what} records no feature-definition hash (it was trained before riskstrat recorded "
              f"one), so it cannot be checked that this version of riskstrat builds its features as they were "
              f"when it was trained; retrain it to have the check")
        return CLINICAL
    if trained != running:
        raise FeatureSpecMismatchError(
            f"{what} was trained on features defined differently from this version of riskstrat (feature "
            f"definitions {trained} when trained, {running} now): its risks would come from features it never "
            f"saw. Retrain it with this version (riskstrat train, then evaluate and promote), or use {by} to score "
            f"with it. Nothing was written")
    return CLINICAL


def models_spec(loaded_models, *, stage: Stage = no_stage):
    """One :class:`~riskstrat.features.spec.FeatureSpec` for models scored together: the union of their
    specs (:func:`check_feature_spec`); a name two models define differently is refused
    (:class:`FeatureSpecMismatchError`)."""
    specs = [check_feature_spec(m, stage=stage) for m in loaded_models]
    try:
        return FeatureSpec.union(specs)
    except FeatureSpecError as exc:
        names = " and ".join(f"{m.name} version {m.version}" for m in loaded_models)
        raise FeatureSpecMismatchError(f"{names}: {exc}. Nothing was written") from None


def check_features_match(model, features: pd.DataFrame, records) -> None:
    """Every model feature must be buildable from this data: same names, and its source present
    (``records``: LinkedRecords or a feature engine, anything with ``has(table)``)."""
    missing = [f for f in model.feature_names if f not in features.columns]
    if missing:
        raise ModelDataMismatchError(f"model {model.target} expects features this version of riskstrat does "
                                     f"not build: {missing[:8]}")
    absent = sorted({feature(f).source for f in model.feature_names
                     if feature(f).source != "persons" and not records.has(feature(f).source)})
    if absent:
        raise ModelDataMismatchError(
            f"the {model.target} model was trained with data from {', '.join(absent)}, which this data set lacks; "
            f"score with data that has it or train a model without it (data.exclude_sources)")


def check_sources_have_rows(models, row_counts: dict[str, int], *, allow: bool) -> list[str]:
    """The tables ``models`` (RiskModels) take features from that are present with no rows.

    An empty feed (an inpatient extract that arrived with its header only) would score everyone as if
    no one had been in hospital: refused (:class:`ModelDataMismatchError`) unless ``allow``; returns
    the empty tables either way (the manifest records them).
    """
    used = {feature(f).source for m in models for f in m.feature_names} - {"persons"}
    empty = sorted(t for t in used if t in row_counts and row_counts[t] == 0)
    if empty and not allow:
        raise ModelDataMismatchError(
            f"{', '.join(empty)} {'has' if len(empty) == 1 else 'have'} no rows in this data set, but the models were "
            f"trained with {'it' if len(empty) == 1 else 'them'}: everyone would be scored as if no one had used "
            f"{'that service' if len(empty) == 1 else 'those services'}. Nothing was published. Check the feed "
            f"(an extract with its header only?); if the table really is empty this month, score with "
            f"allow_empty_sources=true")
    return empty
