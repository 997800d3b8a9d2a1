"""The whole path on synthetic data: generate, train both models, register, promote, score."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from riskstrat.data.io import dataset_metadata, read_json
from riskstrat.data.load import load_data
from riskstrat.data.synth import write_population
from riskstrat.modeling.config import ScoringConfig, TrainConfig, load_config, path_override
from riskstrat.pipelines.evaluate import TooFewEventsError, run_evaluation
from riskstrat.pipelines.score import run_scoring
from riskstrat.pipelines.train import run_training
from riskstrat.registry import tracking

# What `riskstrat demo` prints (where the models went), re-exported: the command imports only its pipeline.
from riskstrat.registry.tracking import tracking_uri as tracking_uri

DEMO_DATA = Path("riskstrat-data/synthetic")
DEMO_TARGETS = ("emergency_admission", "high_cost")
# Below this many people the held-out test group would have fewer than guards.min_events_test (100)
# high-cost people (the top 5% of about a quarter of the population), so the demo tests everyone at
# the test date instead (split.mode=temporal_only: temporal validation only, see the README).
TEMPORAL_ONLY_BELOW = 10_000


# Who to ask and how to find a person on the demo's pages: fictional, in the shape a real one takes.
DEMO_CONTACT = ("Population Health Analytics, NHS Demo Integrated Care Board: phm.analytics@demo-icb.example.nhs.uk, "
                "01632 960 123 (weekdays 9-5)")
DEMO_FIND_PERSON = ("Open the Population Health Portal, choose Search > Pseudonym and paste the Person ID: it opens the "
                    "person's GP record in your clinical system.")


def demo_config(target: str, *, data_dir: Path = DEMO_DATA, overrides: list[str] | None = None) -> TrainConfig:
    """The demo's config for a target: the defaults (as in configs/*.yaml) on the demo data."""
    return load_config(None, [f"target.name={target}", path_override("data.path", data_dir), *(overrides or [])])


def ensure_synthetic(data_dir: Path, *, people: int, seed: int, progress=None) -> tuple[dict, bool]:
    """Generate the synthetic data unless the same (people, seed) set is already there."""
    meta_path = data_dir / "dataset.json"
    if meta_path.exists():
        meta = read_json(meta_path)
        if meta.get("n_people") == people and meta.get("seed") == seed and meta.get("generator") == "riskstrat.synth":
            return meta, False
    return write_population(data_dir, people, seed=seed, progress=progress), True


@dataclass
class DemoResult:
    runs: dict = field(default_factory=dict)        # target -> pipelines.train.TrainingRun
    champions: dict = field(default_factory=dict)   # target -> (name, version, newly promoted?)
    evaluations: dict = field(default_factory=dict)  # target -> pipelines.evaluate.EvaluationRun, or the reason none


def run_demo_training(*, data_dir: Path = DEMO_DATA, stage: Callable[[str], None], overrides: list[str] | None = None,
                      ) -> DemoResult:
    """Train and register both demo models; make a model champion if it has none yet."""
    result = DemoResult()
    records = None
    people = dataset_metadata(data_dir).get("n_people")
    small = people is not None and people < TEMPORAL_ONLY_BELOW
    if small:
        stage(f"{people:,} people: too few for a held-out test group with enough events, so the models are tested "
              f"on everyone at the test date (split.mode=temporal_only; {TEMPORAL_ONLY_BELOW:,}+ people use the "
              f"default held-out split)")
    for target in DEMO_TARGETS:
        cfg = demo_config(target, data_dir=data_dir,
                          overrides=(["split.mode=temporal_only"] if small else []) + list(overrides or []))
        if records is None:
            records = load_data(cfg.data, stage=stage)
        stage(f"training the {target.replace('_', ' ')} model: {cfg.target.words} within {cfg.target.horizon_days} days")
        run = run_training(cfg, stage=stage, records=records)
        result.runs[target] = run
        name, version = run.logged.model_name, run.logged.model_version
        current = tracking.load_champion_version(name, uri=cfg.tracking.uri)
        result.evaluations[target] = _evaluate(name, version, current, run.config or cfg, records, stage=stage)
        # The very first version becomes champion without the gate: nothing is live yet and the data are
        # synthetic. It is evaluated above, so its report, card and the gate's reading exist; every later
        # version goes through `riskstrat promote` and the gate. The version scored is the refit for
        # deployment (model.refit: latest), which inherits that evaluation.
        deployed = run.refit_logged.model_version if run.refit_logged is not None else version
        if current is None:
            tracking.promote(name, deployed, alias="champion", uri=cfg.tracking.uri)
            result.champions[target] = (name, deployed, True)
        else:
            result.champions[target] = (name, current, False)
    return result


def _evaluate(name: str, version: str, champion: str | None, cfg: TrainConfig, records, *, stage):
    """Evaluate a freshly trained version at the test date (against the champion if there is one);
    writes the report and models/<name>/card.md. Too few events on a small population is not fatal.
    A model trained with ``split.mode: temporal_only`` has no held-out people: it is evaluated on
    everyone (the report says so), the people never used in training shown apart."""
    try:
        return run_evaluation(f"{name}/{version}", cfg.data.path, cfg.index_dates.test,
                              against=f"{name}@champion" if champion else None, uri=cfg.tracking.uri,
                              n_boot=cfg.evaluation.n_bootstrap, figures=cfg.evaluation.figures,
                              band_resamples=cfg.evaluation.calibration_band_resamples, records=records, stage=stage,
                              include_seen=cfg.split.mode == "temporal_only")
    except TooFewEventsError as exc:
        stage(f"no evaluation of {name} version {version}: {exc}")
        return str(exc)


def run_demo_scoring(meta: dict, *, data_dir: Path = DEMO_DATA, stage: Callable[[str], None]) -> dict:
    """Score the demo population the day after its extract ends, with the champions."""
    # Synthetic data: a rerun with fewer people may replace a larger month (the shrink check is for real months),
    # and a rerun of the demo republishes its month on purpose (replace_existing).
    cfg = load_config(None, [path_override("data.path", data_dir), "lists.holdout_fraction=0.1",
                             # an example: a real hold-out names the body that approved it and its reference
                             'lists.holdout_approval="Demo ICB research governance committee, ref DEMO-2026-01 (example)"',
                             "allow_population_shrink=true", "replace_existing=true"], model=ScoringConfig)
    # The demo's pages name a (fictional) team and a place to search, as an organisation's must.
    cfg = cfg.model_copy(update={"lists": cfg.lists.model_copy(update={
        "contact": DEMO_CONTACT, "find_person": DEMO_FIND_PERSON})})
    as_of = pd.Timestamp(meta["extract_end"]) + pd.Timedelta(days=1)
    return run_scoring(cfg, as_of, stage=stage)
