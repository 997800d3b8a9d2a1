"""Costs and currency: what a model records of the money it was trained on, and the check that
``score`` and ``evaluate`` read the data's money as the model did.

Every trained model's metadata holds :data:`COSTS_KEY` (:func:`training_costs`): the training data's
currency (``dataset.json`` ``currency``, default GBP), for each event table with a cost column whether
it had costs (recorded in some rows) or none (the column absent, or blank in every row), and whether
the model uses cost features (:func:`uses_costs`).

Before the features are built, :func:`check_model_costs` refuses (:class:`CostCurrencyError`) a model
whose amounts would be misread: the data's currency is not the model's, or the model used costs from a
table that has none in this data (blank costs count as 0 in the features, so everyone would read as
having spent nothing there). Two ways on, each recorded with the run:

- a conversion rate (``currency_rate``, ``--currency-rate``): the data's amounts are multiplied by it
  to get the model's currency, on the cost features (:class:`CostHandling`); every amount the run
  writes (predicted costs, cost bands, money in reasons, the evaluation's costs) is then in the
  model's currency;
- no cost features (``without_costs``, ``--without-costs``): they are missing (NaN) for everyone, as
  LightGBM reads a value it never saw; the ranking is degraded and the run says so.

A model saved before riskstrat recorded this is taken as trained in the data's currency, with costs
from every table the data have (a warning says so).

>>> is_cost_feature("cost_total_12m"), is_cost_feature("social_care_weekly_cost"), is_cost_feature("age")
(True, True, False)
>>> uses_costs(["age", "gp_contacts__cost_365d"])
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from riskstrat.errors import RiskstratError
from riskstrat.data.schema import COST_COLUMNS, EVENT_TABLES, TABLES
from riskstrat.features.generic import parse_name

__all__ = ["COSTS_KEY", "CostCurrencyError", "CostHandling", "check_model_costs", "cost_features", "cost_params",
           "cost_sources", "cost_tags", "is_cost_feature", "training_costs", "uses_costs"]

COSTS_KEY = "costs"  # the model metadata's entry: {"currency", "sources": {table: had costs}, "uses_costs"}


class CostCurrencyError(RiskstratError):
    """A model's amounts would be misread on this data: another currency, or costs it used are missing."""


def is_cost_feature(name: str) -> bool:
    """Whether the feature ``name`` is an amount of money: ``cost_*`` and any name holding ``cost``
    (``social_care_weekly_cost``); of the generic covariates only the cost sums ``<table>__cost_<window>``
    (a sub-type read from the data may hold "cost" in its name: its counts are not money)."""
    generic = parse_name(name)
    if generic is not None:
        return generic.measure == "cost"
    return name.startswith("cost_") or "cost" in name


def cost_features(feature_names: Iterable[str]) -> list[str]:
    """The cost features among ``feature_names``, in their order."""
    return [name for name in feature_names if is_cost_feature(name)]


def uses_costs(feature_names: Iterable[str]) -> bool:
    """Whether a model with these features uses any cost feature."""
    return bool(cost_features(feature_names))


def _tables_with_cost_columns() -> list[str]:
    return [t for t in EVENT_TABLES if any(c in TABLES[t].column_names for c in COST_COLUMNS)]


def cost_sources(sources: Iterable[str], *, row_counts: Mapping[str, int],
                 blank_costs: Iterable[tuple[str, str]]) -> dict[str, bool]:
    """For each table of ``sources`` that has a cost column in the schema: True when costs are recorded
    in some of its rows, False when it has no rows or its cost column is absent or blank in every row
    (``blank_costs``: an engine's, :func:`riskstrat.data.validate.blank_costs`)."""
    blank = {table for table, _ in blank_costs}
    present = set(sources)
    return {t: bool(row_counts.get(t, 0)) and t not in blank for t in _tables_with_cost_columns() if t in present}


def training_costs(*, currency: str, sources: Iterable[str], row_counts: Mapping[str, int],
                   blank_costs: Iterable[tuple[str, str]], feature_names: Iterable[str]) -> dict:
    """What a model records of its training data's money (metadata :data:`COSTS_KEY`)."""
    return {"currency": str(currency).upper(),
            "sources": cost_sources(sources, row_counts=row_counts, blank_costs=blank_costs),
            "uses_costs": uses_costs(feature_names)}


@dataclass(frozen=True)
class CostHandling:
    """How a run reads the data's money: ``currency`` is the currency its amounts are written in (the
    model's when converted), ``rate`` multiplies the data's amounts into it, ``without_costs`` blanks the
    cost features. Applied to a feature frame by :meth:`apply` (picklable: Spark ships it)."""

    data_currency: str
    currency: str
    rate: float | None = None
    without_costs: bool = False

    @property
    def changes_features(self) -> bool:
        return self.rate is not None or self.without_costs

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its cost features converted (times ``rate``) or missing (``without_costs``);
        the same frame when there is nothing to do."""
        columns = cost_features(frame.columns)
        if not columns or not self.changes_features:
            return frame
        frame = frame.copy()
        for name in columns:
            frame[name] = np.nan if self.without_costs else frame[name].to_numpy(dtype="float64") * self.rate
        return frame

    def apply_block(self, block: np.ndarray, columns: Sequence[str]) -> None:
        """:meth:`apply` in place on a block of features with a row per column (``columns``, as
        :func:`riskstrat.features.spec.derive_block` makes it): the same numbers."""
        if not self.changes_features:
            return
        for i, name in enumerate(columns):
            if is_cost_feature(name):
                block[i] = np.nan if self.without_costs else block[i] * self.rate

    def convert(self, amounts):
        """Amounts in the data's currency (the evaluation's actual costs) in the run's currency."""
        return amounts if self.rate is None else np.asarray(amounts, dtype="float64") * self.rate

    def as_dict(self) -> dict:
        """For the manifest, the run's parameters and the report."""
        return {"data_currency": self.data_currency, "currency": self.currency, "currency_rate": self.rate,
                "without_costs": self.without_costs}


def _sources_text(tables: Sequence[str], why: Mapping[str, str]) -> str:
    return ", ".join(f"{t} ({why[t]})" for t in tables)


def check_model_costs(models: Sequence, *, data_currency: str, sources: Iterable[str],
                      row_counts: Mapping[str, int], blank_costs: Iterable[tuple[str, str]],
                      currency_rate: float | None = None, without_costs: bool = False,
                      stage: Callable[[str], None] = lambda message: None,
                      options: tuple[str, str] = ("--currency-rate RATE", "--without-costs")) -> CostHandling:
    """Refuse (:class:`CostCurrencyError`) models (:class:`riskstrat.registry.tracking.LoadedModel`) whose
    amounts this data would misread, unless ``currency_rate`` or ``without_costs`` say how to go on;
    returns how the run reads money (:class:`CostHandling`). ``options`` names the two ways on as the
    caller's user gives them (command-line options, or config keys).

    A model's amounts matter when it uses cost features from a table that had costs, or predicts costs
    (a high-cost model's cost estimator); other models pass whatever the data's currency or costs.
    """
    data_currency = str(data_currency or "GBP").upper()
    rate_option, without_option = options
    if currency_rate is not None and without_costs:
        raise CostCurrencyError(f"{rate_option.split()[0]} and {without_option} were both given: choose one (a rate "
                                f"converts the costs, {without_option} leaves them out)")
    if currency_rate is not None and not (math.isfinite(currency_rate) and currency_rate > 0):
        raise CostCurrencyError(f"the currency rate must be a positive number, got {currency_rate}")
    blank = {table: "cost column absent or blank in every row" for table, column in blank_costs}
    present = set(sources)
    old, needs_rate = [], {}
    for m in models:
        meta = m.risk_model.metadata.get(COSTS_KEY)
        what = f"{m.name} version {m.version}"
        names = list(m.risk_model.feature_names)
        if not meta:
            old.append(what)
            model_currency = data_currency
            had = {t: True for t in _tables_with_cost_columns() if t in present}  # unknown: as if costed
        else:
            model_currency = str(meta.get("currency") or "GBP").upper()
            had = dict(meta.get("sources") or {})
        used = uses_costs(names) and any(had.values())
        predicts_cost = getattr(m.risk_model, "cost_estimator", None) is not None
        if not (used or predicts_cost):
            continue  # no amount of money enters or leaves this model
        if model_currency != data_currency:
            if currency_rate is None and not (without_costs and not predicts_cost):
                ways = [f"give the rate that converts {data_currency} into {model_currency} ({rate_option}: the "
                        f"data's amounts are multiplied by it)"]
                if not predicts_cost:
                    ways.append(f"score without cost features ({without_option}; the ranking is then degraded)")
                raise CostCurrencyError(
                    f"{what} was trained on costs in {model_currency}, but this data set's costs are in "
                    f"{data_currency} (dataset.json currency): its {'cost features' if used else 'predicted costs'} "
                    f"would read {data_currency} amounts as {model_currency}. To go on, {' or '.join(ways)}; or use "
                    f"a model trained on {data_currency} data")
            needs_rate[what] = model_currency
        elif currency_rate is not None:
            raise CostCurrencyError(
                f"a currency rate ({currency_rate:g}) was given, but {what} was trained on costs in {model_currency} "
                f"and this data set's costs are in {data_currency} too"
                + (" (the model records no currency: it was trained before riskstrat recorded one, and is taken as "
                   "trained in the data's)" if what in old else "")
                + f": converting would misstate every amount. Leave out {rate_option.split()[0]}")
        if used and not without_costs:
            # A table missing altogether is check_features_match's refusal (its features cannot be built).
            lost = [t for t, v in had.items() if v and t in present and t in blank]
            if lost:
                why = {t: blank[t] for t in lost}
                with_costs = [t for t, v in had.items() if v]
                raise CostCurrencyError(
                    f"{what} uses cost features and was trained with costs (in {model_currency}) from "
                    f"{', '.join(with_costs)}, but this data set ({data_currency}) has none from "
                    f"{_sources_text(lost, why)}: its cost features would read everyone as having spent nothing "
                    f"there. Fill in the costs in the source, or go on without cost features ({without_option}: "
                    f"they are then missing for everyone and the ranking is degraded), or use a model trained "
                    f"without them (features.exclude the cost features)")
    if old:  # once for all the models concerned
        stage(f"warning: {', '.join(old)} {'records' if len(old) == 1 else 'record'} no currency or cost sources "
              f"(trained before riskstrat recorded them): taken as trained in this data set's currency "
              f"({data_currency}) with costs from every table it has; retrain to have the check")
    if currency_rate is not None and not needs_rate:
        stage(f"warning: the currency rate {currency_rate:g} is not used: no model reads money in another currency")
        currency_rate = None
    if without_costs:
        stage("warning: scoring without cost features (missing for everyone): the ranking is degraded, as the "
              "models lose what past costs told them")
    if len(set(needs_rate.values())) > 1:
        raise CostCurrencyError(
            f"one currency rate cannot serve models trained in different currencies ("
            f"{', '.join(f'{w}: {c}' for w, c in needs_rate.items())}): score them separately")
    run_currency = next(iter(needs_rate.values())) if currency_rate is not None else data_currency
    if currency_rate is not None:
        stage(f"converting the data's costs from {data_currency} into {run_currency} at {currency_rate:g} "
              f"({', '.join(needs_rate)}); amounts are written in {run_currency}")
    return CostHandling(data_currency=data_currency, currency=run_currency, rate=currency_rate,
                        without_costs=without_costs)


def cost_tags(costs: Mapping) -> dict[str, str]:
    """A model's :data:`COSTS_KEY` record as MLflow tags (training run and model version)."""
    sources = costs.get("sources") or {}
    return {"riskstrat.currency": str(costs.get("currency")),
            "riskstrat.uses_costs": "true" if costs.get("uses_costs") else "false",
            "riskstrat.cost_sources": ",".join(t for t, had in sources.items() if had) or "none",
            "riskstrat.cost_sources_without_costs": ",".join(t for t, had in sources.items() if not had) or "none"}


def cost_params(costs: Mapping) -> dict[str, str]:
    """A model's :data:`COSTS_KEY` record as MLflow parameters of its training run."""
    params = {"costs.currency": str(costs.get("currency")), "costs.uses_costs": str(bool(costs.get("uses_costs")))}
    params.update({f"costs.source.{t}": "recorded" if had else "none"
                   for t, had in (costs.get("sources") or {}).items()})
    return params
