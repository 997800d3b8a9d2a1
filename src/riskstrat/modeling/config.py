"""Run configuration: one validated object per run, read from YAML with dotted overrides.

Unknown keys are rejected (``extra="forbid"``) so that a typo fails loudly instead of being ignored.

>>> cfg = TrainConfig.model_validate({"target": {"name": "death"}})
>>> cfg.target.horizon_days
365
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riskstrat.errors import RiskstratError
from riskstrat.data.io import DataFileError, read_user_text
from riskstrat.data.schema import EVENT_TABLES
from riskstrat.features.clinical import FEATURE_NAMES
from riskstrat.features.generic import GenericFeaturesConfig
from riskstrat.features.words import generic_feature
from riskstrat.outcomes import OUTCOMES, UNION_TAGS, EmergencyAdmission, EventOutcome, OutcomeConfig
from riskstrat.modeling.split import suggest_index_dates
from riskstrat.modeling.tiers import DEFAULT_GROUP_PAGE_NAMES, LOWEST_TIER, GroupRule, check_tier_cutoffs


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    path: Path = Path("riskstrat-data/synthetic")
    extract_end: dt.date | None = Field(None, description="Last day the extract covers; default from dataset.json, "
                                                          "else where the monthly event volume stops (riskstrat.data.data_end).")
    exclude_sources: list[str] = Field(default_factory=list,
                                       description="Event tables to leave out, e.g. [social_care] without a legal basis.")
    out_of_life_events: Literal["drop", "keep", "error"] = "drop"
    duckdb_memory_limit: str | None = Field(
        None, description="The DuckDB engine's memory for its queries, e.g. '3GB'; beyond it DuckDB spills to its temporary "
                    "folder on disk (slower, bounded). Default: half the memory available when the engine opens (the "
                    "smaller of Linux's MemAvailable and a container's cgroup room), at least 1 GiB; off Linux, DuckDB's "
                    "own 80% of the machine's memory, which counts neither other processes nor the run's own memory. "
                    "Set it to bound the whole run: at 2GB the monthly run of a fresh 5M-person population peaked at "
                    "6,103 MiB (benchmarks/README.md).")

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_amount(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(?i)\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", v):
            raise ValueError(f"{v!r} is not an amount of memory: give a number and a unit, e.g. 3GB or 512MB "
                             "(units KB, MB, GB, TB, KiB, MiB, GiB, TiB), or leave it out for DuckDB's default")
        return v

    @field_validator("exclude_sources")
    @classmethod
    def _known_sources(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in EVENT_TABLES]
        if bad:
            raise ValueError(f"unknown sources {bad}; choose from {list(EVENT_TABLES)}")
        return v


class CohortConfig(_Strict):
    min_age: float = Field(18, ge=0)
    max_age: float = Field(120, le=130)


class IndexDatesConfig(_Strict):
    train: list[dt.date] = Field(default_factory=lambda: [dt.date(2023, 11, 1), dt.date(2024, 2, 1),
                                                         dt.date(2024, 5, 1), dt.date(2024, 8, 1),
                                                         dt.date(2024, 11, 1)])
    test: dt.date = dt.date(2025, 11, 1)

    @model_validator(mode="after")
    def _test_after_train(self) -> "IndexDatesConfig":
        if not self.train:
            raise ValueError("index_dates.train needs at least one date")
        if self.test <= max(self.train):
            raise ValueError(f"index_dates.test ({self.test}) must come after every training date "
                             f"(latest {max(self.train)}): validation is temporal")
        return self


# The outcome to predict: one of riskstrat.outcomes (chosen by ``name``, or ``kind: event``).
TargetConfig = OutcomeConfig


class FeaturesConfig(_Strict):
    include: list[str] | Literal["all"] = "all"
    exclude: list[str] = Field(default_factory=list)
    generic: GenericFeaturesConfig = Field(default_factory=GenericFeaturesConfig)

    @model_validator(mode="after")
    def _known_features(self) -> "FeaturesConfig":
        names = ([] if self.include == "all" else list(self.include)) + list(self.exclude)
        bad = [n for n in names if n not in FEATURE_NAMES and generic_feature(n) is None]
        if bad:
            raise ValueError(f"unknown features {bad}; see `riskstrat features` for the list (generic ones are "
                             f"named table__measure or table__group__measure, e.g. gp_contacts__count_90d)")
        return self


class SplitConfig(_Strict):
    mode: Literal["person_and_date", "temporal_only"] = Field(
        "person_and_date",
        description="person_and_date: test people (split.test_fraction) are held out of training and scored at "
                    "the test date (temporal and person validation). temporal_only, for small data: everyone "
                    "eligible at the test date is tested, including the training and calibration people "
                    "(temporal validation only: weaker, as the model has seen these people's earlier rows); "
                    "training and calibration people are still split by the seeded hash.")
    test_fraction: float = Field(0.3, gt=0, lt=0.9, description="People held out of training, scored at the test date.")
    calibration_fraction: float = Field(0.15, gt=0, lt=0.5,
                                        description="People used for early stopping and calibration only.")
    seed: int = 42


_AUTO = ("None or 'auto' (the default): chosen from the number of training rows by riskstrat.modeling.models.auto_lightgbm "
         "(logged as lightgbm.* params); a number here is used as given.")


class LightGBMConfig(_Strict):
    n_estimators: int | None = Field(None, ge=10, description="Most trees (early stopping picks fewer). " + _AUTO)
    learning_rate: float | None = Field(None, gt=0, le=1, description=_AUTO)
    num_leaves: int = Field(7, ge=2)
    max_depth: int = Field(6, ge=-1, description="Caps tree depth, which also bounds SHAP cost.")
    min_child_samples: int | None = Field(None, ge=1, description="Fewest training rows in a leaf. " + _AUTO)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(100, ge=1)
    n_jobs: int = Field(
        1, ge=1, description="LightGBM threads. 1 by default: on a shared 2-core machine (load 9-14) a 100k-person fit "
                             "took 49-76 s with 1 thread and 332-336 s with 2 (OpenMP threads wait on each other when "
                             "the cores are busy; benchmarks/bench_threads.py); on a quiet machine 2 threads are "
                             "about 1.7x faster. Each thread count gives the same model run after run (deterministic); 1 and 2 "
                             "threads give slightly different ones (sums in another order).")

    @field_validator("n_estimators", "learning_rate", "min_child_samples", mode="before")
    @classmethod
    def _auto(cls, v):
        return None if isinstance(v, str) and v.strip().lower() == "auto" else v


def _range(low, high, kind=float):
    return Field((kind(low), kind(high)), description=f"Search range [low, high] (default {low} to {high}).")


class SearchConfig(_Strict):
    """Optional optuna search over LightGBM's parameters, on the training people only."""

    enabled: bool = Field(False, description="Search before the final fit (off: use model.lightgbm as given).")
    n_trials: int = Field(30, ge=1, description="Trials, the first being the configured parameters.")
    timeout_minutes: float | None = Field(20, gt=0, description="Stop starting new trials after this long.")
    validation_fraction: float = Field(0.25, gt=0, lt=1, description="Training people held back to score trials.")
    learning_rate: tuple[float, float] = _range(0.01, 0.1)
    num_leaves: tuple[int, int] = _range(3, 63, int)
    min_child_samples: tuple[int, int] = _range(20, 1000, int)
    subsample: tuple[float, float] = _range(0.5, 1.0)
    colsample_bytree: tuple[float, float] = _range(0.3, 1.0)
    reg_lambda: tuple[float, float] = _range(0.001, 100.0)

    @model_validator(mode="after")
    def _ordered(self):
        for name in ("learning_rate", "num_leaves", "min_child_samples", "subsample", "colsample_bytree", "reg_lambda"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name}: the range must be positive and low <= high, got [{low}, {high}]")
        if self.subsample[1] > 1 or self.colsample_bytree[1] > 1:
            raise ValueError("subsample and colsample_bytree are fractions: their ranges must end at or below 1")
        if self.num_leaves[0] < 2:
            raise ValueError("num_leaves: a tree needs at least 2 leaves")
        return self


class GuardsConfig(_Strict):
    """Refusals that keep a model the data cannot support from being used (see riskstrat.modeling.guards)."""

    min_events_train: int = Field(
        100, ge=1, description="Least outcome events (and non-events) in the training rows. Riley et al. (BMJ 2020) "
                               "size development data by events per predictor parameter; with ~50 features and "
                               "shrinkage by early stopping, 100 events is a floor, not a target.")
    min_events_calibration: int = Field(
        50, ge=1, description="Least events in the calibration rows, which stop the boosting and fit a 2-parameter "
                              "calibration: 50 events keep the calibration slope's interval usable.")
    min_events_test: int = Field(
        100, ge=1, description="Least events in the test rows: validation needs about 100 events (and 100 non-events) "
                               "at the least and 200 for stable calibration (Collins et al. 2016; Riley et al. 2020).")
    register_degenerate: bool = Field(
        False, description="Register a degenerate model (one tree, constant score, test AUROC interval including "
                           "0.5) with the tag riskstrat.degenerate=<reason>; promote and score then refuse it "
                           "unless forced. Default: log the run with the tag, but register nothing.")
    min_distinct_scores: int = Field(3, ge=2, description="A test score with fewer distinct values is 'constant'.")


class ModelConfig(_Strict):
    lightgbm: LightGBMConfig = Field(default_factory=LightGBMConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    calibration: Literal["isotonic", "sigmoid"] = "sigmoid"
    refit: Literal["latest", "none"] = Field(
        "latest", description="latest (default): after the evaluation, fit the same settings again (same "
                              "parameters, the trees early stopping or the search chose, the same calibration) on "
                              "every labelled index date up to the latest whose horizon the data cover, the test "
                              "people included (calibration people kept apart), and register that as its own "
                              "version, inheriting the evaluated version's evaluation: the version to promote for "
                              "scoring. none: register only the evaluated model (trained a year or more behind the "
                              "data). Only when the run is logged and registered (not with --no-tracking); see "
                              "riskstrat.modeling.refit.")
    baselines: list[Literal["logistic", "prior_use"]] = Field(default_factory=lambda: ["logistic", "prior_use"])


# The report's calibration band: its bootstrap resamples by default (evaluation.calibration_band_resamples).
CALIBRATION_BAND_RESAMPLES = 50


class EvaluationConfig(_Strict):
    top_fractions: list[float] = Field(default_factory=lambda: [0.005, 0.01, 0.02, 0.05])
    n_bootstrap: int = Field(200, ge=1, description="Bootstrap resamples for confidence intervals.")
    calibration_band_resamples: int = Field(
        CALIBRATION_BAND_RESAMPLES, ge=0,
        description="Bootstrap resamples behind the 95% band of the evaluation report's smoothed calibration curve "
                    "(0: the curve without a band).")
    figures: bool = Field(True, description="Draw the figures: the evaluation report's PNGs and the training run's "
                                            "plots/ in MLflow. false leaves them out (the report says so); every "
                                            "table, number and list is the same.")
    truth_path: Path | None = Field(None, description="Ground truth of a synthetic data set; default "
                                                      "<data.path>/ground_truth/truth.parquet when it exists.")


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db.")
    experiment: str = "riskstrat"
    registered_model: str | None = Field(None, description="Default riskstrat-<target with dashes>.")


class TrainConfig(_Strict):
    """Everything one training run needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    cohort: CohortConfig = Field(default_factory=CohortConfig)
    index_dates: IndexDatesConfig | Literal["auto"] = Field(
        default_factory=IndexDatesConfig,
        description="Training and test index dates, or 'auto': the latest test date whose horizon the extract "
                    "covers and five training dates every 3 months whose horizons end by it.")
    target: TargetConfig = Field(default_factory=EmergencyAdmission)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    engine: Literal["pandas", "duckdb", "spark"] = Field(
        "pandas", description="Engine that builds the features and reads the outcome's tables: pandas (the "
                              "reference: every table validated in memory), duckdb (SQL over the Parquet folder, "
                              "validation's rules as SQL counts; for large populations) or spark (the same on "
                              "Spark, the riskstrat[spark] extra). All give the same model.")

    @model_validator(mode="after")
    def _label_windows_end_by_test(self) -> "TrainConfig":
        if self.index_dates == "auto":
            return self  # checked once the dates are chosen (with_index_dates_for)
        horizon = dt.timedelta(days=self.target.horizon_days)
        late = [d for d in self.index_dates.train if d + horizon > self.index_dates.test]
        if late:
            raise ValueError(
                f"training index dates {[str(d) for d in late]} have label windows ({self.target.horizon_days} days) "
                f"that run past the test date {self.index_dates.test}: training would see outcomes from the test "
                f"period; use dates on or before {self.index_dates.test - horizon}")
        return self

    def with_index_dates_for(self, extract_end) -> "TrainConfig":
        """This config with ``index_dates: auto`` replaced by dates that fit an extract ending ``extract_end``."""
        if self.index_dates != "auto":
            return self
        train, test = suggest_index_dates(extract_end, horizon_days=self.target.horizon_days)
        return type(self).model_validate({**self.model_dump(), "index_dates": {"train": train, "test": test}})

    @property
    def registered_model_name(self) -> str:
        return self.tracking.registered_model or "riskstrat-" + self.target.name.replace("_", "-")


class ScoringModelsConfig(_Strict):
    risk: str = Field("riskstrat-emergency-admission", description="Registered model that ranks and explains.")
    high_cost: str | None = Field("riskstrat-high-cost", description="Registered high-cost model (None: skip).")
    alias: str = "champion"
    allow_degenerate: bool = Field(False, description="Score with a model version tagged riskstrat.degenerate "
                                                      "(one tree, constant score, chance-level AUROC).")


# The flags a clinician checks first, found in the data for each listed person (riskstrat.scoring.facts):
# on the palliative care register, living in a care home, already case-managed, died or moved since the data end.
LIST_FLAGS = ("palliative_care", "care_home", "case_managed", "died", "moved")
ListFlag = Literal["palliative_care", "care_home", "case_managed", "died", "moved"]


class ListsConfig(_Strict):
    list_size: int = Field(100, ge=1, description="People per practice list (before the hold-out).")
    reasons: int = Field(3, ge=1, le=10, description="Reasons shown per person.")
    holdout_fraction: float = Field(0.0, ge=0, lt=0.5,
                                    description="Share of each practice's listed people not shown this month.")
    holdout_approval: str | None = Field(
        None, description="Who approved holding people back, with their reference (free text, shown on every page), "
                          "e.g. 'North ICB research governance, ref RG-2026-014'. Required when holdout_fraction > 0.")
    exclude_flags: list[ListFlag] = Field(
        default_factory=list,
        description="Flags whose people are left off the lists (not replaced; each page counts them and says why): "
                    "any of palliative_care, care_home, case_managed, died, moved. Default: none, flagged people are "
                    "listed with the flag shown.")
    holdout_seed: int = 42
    holdout_exempt_tiers: list[str] = Field(
        default_factory=lambda: ["very high"],
        description="Tiers never held back: by default everyone in the very high tier is shown (clinicians will "
                    "not accept hiding the people most at risk); the fraction applies to the other listed people.")
    workbooks: Literal["all", "none"] | list[str] = Field(
        "all", description="Whose lists also get an Excel workbook (list.xlsx): all (default), none, or the "
                           "practice ids that asked for one; the CSV and the page are always written, and a list "
                           "without its workbook carries workbook.json, from which `riskstrat workbook` and the "
                           "worklist build it when asked (the same bytes).")
    write_workers: Literal["auto"] | Annotated[int, Field(ge=1, le=8)] = Field(
        "auto", description="Processes that write the practices' files at once (riskstrat score --jobs): 1, the "
                            "run's own; more, that many worker processes (joblib, loky) while the run writes the "
                            "month's other files. auto (default): the CPUs the run may use, at most 4, for a month of "
                            "150 workbooks or more, or 400 lists or more (hundreds of practices), else 1. The files "
                            "are the same bytes either way "
                            "(benchmarks/README.md, bench_writing.py).")
    explain: Literal["listed", "all"] = Field(
        "listed", description="Whose reasons are computed (exact SHAP): the listed people (default), or everyone "
                              "scored (reasons for all in population.parquet; about 4,500 people/s on 2 cores).")
    demographic_reasons: bool = Field(False, description="Show age, sex and deprivation as reasons (age and sex "
                                                         "are columns of every list already; off by default).")
    practice_names: dict[str, str] = Field(default_factory=dict,
                                           description="Practice names by code, for the list titles.")
    practice_names_file: Path | None = Field(None, description="CSV of practice_id,name (added to practice_names).")
    find_person: str | None = Field(None, description="How a practice finds a listed person from the pseudonym "
                                                      "(shown when no re-identification lookup is supplied), e.g. "
                                                      "'search the pseudonym in the EMIS population search'.")
    contact: str | None = Field(None, description="Who produced the lists and whom to ask (name, team, email).")
    next_steps: list[str] | None = Field(None, description="What to do with a listed person and what the service "
                                                           "offers (paragraphs), e.g. a multidisciplinary review.")
    suppress_below: int = Field(8, ge=1, description="Commissioners' counts from 1 to this minus 1 are shown as "
                                                     "'<8' (NHS small-number rule); 1 turns it off.")
    round_counts_to: int = Field(5, ge=1, description="Other commissioners' counts are rounded to the nearest "
                                                      "multiple of this; 1 turns it off.")
    tiers: dict[str, float] = Field(default_factory=lambda: {"very high": 0.005, "high": 0.05, "moderate": 0.20})
    groups: list[dict] | None = Field(None, description="Priority groups; default: prevention 40-55, care "
                                                        "provision 85+, high-cost individuals, frequent users.")
    page_group_names: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_GROUP_PAGE_NAMES),
        description="Priority groups as the practice pages name them, by group name (a clinician's words, e.g. "
                    "'care provision 85+': 'aged 85 and over: care and support needs'); a group not named here keeps "
                    "its name. summary.csv and list.csv keep the groups' own names.")

    @field_validator("tiers")
    @classmethod
    def _tiers_increase(cls, v: dict[str, float]) -> dict[str, float]:
        return check_tier_cutoffs(v)

    @model_validator(mode="after")
    def _exempt_tiers_exist(self) -> "ListsConfig":
        unknown = [t for t in self.holdout_exempt_tiers if t not in [*self.tiers, LOWEST_TIER]]
        if unknown:
            raise ValueError(f"lists.holdout_exempt_tiers names unknown tiers {unknown}; the tiers are "
                             f"{[*self.tiers, LOWEST_TIER]}")
        return self

    @model_validator(mode="after")
    def _holdout_approved(self) -> "ListsConfig":
        if self.holdout_fraction > 0 and not (self.holdout_approval or "").strip():
            raise ValueError(f"lists.holdout_fraction is {self.holdout_fraction:g} but lists.holdout_approval is not "
                             f"set: holding people back from a clinical list needs an approval; name the approving "
                             f"body and its reference (lists.holdout_approval: 'North ICB research governance, ref "
                             f"RG-2026-014'), or set lists.holdout_fraction: 0")
        return self

    @field_validator("exclude_flags")
    @classmethod
    def _flags_once(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("groups")
    @classmethod
    def _valid_groups(cls, v):
        if v is not None:
            for g in v:
                GroupRule.model_validate(g)
        return v


class ScoringTrackingConfig(TrackingConfig):
    # Its own default, so that setting only tracking.uri does not send scoring runs to the training experiment.
    experiment: str = "riskstrat-scoring"


class ScoringConfig(_Strict):
    """Everything one monthly scoring run needs."""

    data: DataConfig = Field(default_factory=DataConfig)
    cohort: CohortConfig = Field(default_factory=CohortConfig)
    models: ScoringModelsConfig = Field(default_factory=ScoringModelsConfig)
    lists: ListsConfig = Field(default_factory=ListsConfig)
    opt_out_file: Path | None = Field(None, description="Pseudonymised ids to exclude, one per line or a CSV "
                                                        "with a person_id column.")
    reidentify_dir: Path | None = Field(None, description="Folder of practice lookups <practice_id>.csv "
                                                          "(person_id, local_id), applied to that practice only.")
    case_managed_file: Path | None = Field(
        None, description="Pseudonymised ids of people already case-managed (one per line, or a CSV with a person_id "
                          "column, as opt_out_file): flagged 'case-managed' on the lists.")
    next_extract: Path | None = Field(
        None, description="A later extract's folder (its persons table, same pseudonyms): people who died, left "
                          "their practice or are no longer in it since this data's end are flagged 'died' or 'moved'.")
    output_dir: Path = Path("riskstrat-output/lists")
    chunk_size: int = Field(200_000, ge=1000, description="People derived (DuckDB engine), predicted and explained per chunk.")
    max_data_lag_days: int = Field(
        62, ge=0, description="Latest scoring date, in days after the data end (data.extract_end, else dataset.json "
                              "extract_end, else where the monthly event volume stops): two months covers a monthly extract that "
                              "arrives late and a run early in the month; later, recent events would be missing.")
    allow_stale_data: bool = Field(False, description="Score even when the date is past the data end plus "
                                                      "max_data_lag_days (the manifest records it).")
    allow_empty_opt_out: bool = Field(
        False, description="Accept an opt-out file with no ids (0 bytes, or only blank or # comment lines): the run "
                           "refuses otherwise, since a list cut short would publish as if no one had opted out.")
    allow_unmatched_opt_outs: bool = Field(
        False, description="Publish even when none of the opt-out file's ids matches anyone in the data (usually a "
                           "wrong key or a wrong file), or an unmatched id looks mis-pasted (a space or a character "
                           "that does not print inside it); the run refuses otherwise.")
    max_population_shrink: float = Field(
        0.2, ge=0, le=1, description="Refuse to publish when fewer people are scored than last month by more than "
                                     "this fraction (a wrong extract or cohort setting would replace good lists).")
    allow_population_shrink: bool = Field(False, description="Publish even when the scored population shrank by "
                                                             "more than max_population_shrink, or is empty.")
    allow_empty_sources: bool = Field(
        False, description="Score even when a table the models were trained with is present but has no rows (an "
                           "empty feed scores everyone as if no one had used that service; refused otherwise).")
    allow_unverified_previous_month: bool = Field(
        False, description="Publish even when last month's files cannot be verified (edited after publishing, "
                           "a truncated manifest, an older version's columns): last month is then treated as "
                           "absent, and the manifest records why. The run refuses otherwise.")
    replace_existing: bool = Field(
        False, description="Replace the month if it is already published in output_dir (a republish: the refusal "
                           "otherwise names the models of both runs; the replaced run folder is kept under .runs/ "
                           "until the next publish, and audit.jsonl records the replacement).")
    currency_rate: float | None = Field(
        None, gt=0, description="Convert the data's costs into the models' currency: the data's amounts (dataset.json "
                                "currency) are multiplied by this rate before the cost features are built, e.g. 0.79 "
                                "for US dollars into a model trained on pounds; every amount written is then in the "
                                "model's currency (the manifest records the rate). Without it a model trained on "
                                "another currency is refused.")
    without_costs: bool = Field(
        False, description="Score with the cost features missing (NaN) for everyone: for data without the costs a model "
                           "was trained with, or in another currency with no rate. The ranking is degraded (the "
                           "manifest records it); without it such data are refused.")
    tracking: ScoringTrackingConfig = Field(default_factory=ScoringTrackingConfig)
    engine: Literal["pandas", "duckdb", "spark"] = Field(
        "pandas", description="Feature engine: pandas (the reference: every table validated in memory), duckdb "
                              "(SQL over the Parquet folder, validation's rules as SQL counts; for large populations) "
                              "or spark (the same on Spark, the riskstrat[spark] extra; on a cluster or local).")

    @model_validator(mode="after")
    def _one_way_with_costs(self) -> "ScoringConfig":
        if self.currency_rate is not None and self.without_costs:
            raise ValueError("currency_rate and without_costs were both set: choose one (a rate converts the costs, "
                             "without_costs leaves them out)")
        return self


class ConfigError(RiskstratError, ValueError):
    """A configuration file or override is invalid; the message says where and why."""


def path_override(key: str, path) -> str:
    """A ``--set`` item that sets ``key`` to ``path`` exactly as given: quoted (a JSON string is YAML),
    so that ``#``, ``[``, ``*``, ``: `` or ``null`` in a path are never read as YAML.

    >>> path_override("output_dir", "/tmp/lists #2")
    'output_dir="/tmp/lists #2"'
    """
    import json

    return f"{key}={json.dumps(str(path))}"


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["model.lightgbm.learning_rate=0.05", ...]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(exc).splitlines()[0]}); quote a "
                              f"text value, e.g. {key.strip()}='\"...\"'") from None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return nested


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, *, model=TrainConfig):
    """Read a YAML config (or defaults when ``path`` is None), apply dotted overrides, validate."""
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        path = Path(path)
        where = str(path)
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        try:
            raw = yaml.safe_load(read_user_text(path, what="configuration")) or {}
        except DataFileError as exc:
            raise ConfigError(str(exc)) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    extra = parse_overrides(overrides or [])
    raw = _merge(_for_outcome(raw, extra.get("target")), extra)
    if overrides:
        where += " with --set overrides"
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{_where(e['loc'])}: {e['msg']}{_hint(e, raw)}" for e in exc.errors()]
        raise ConfigError(f"{where}: invalid configuration\n  " + "\n  ".join(lines)) from None


def _for_outcome(raw: dict, target_override) -> dict:
    """A file's ``target`` settings that the outcome chosen on the command line has, and no others:
    ``--config configs/emergency_admission.yaml --set target.name=death`` drops the file's
    ``death: composite`` (an emergency-admission setting) instead of refusing it."""
    target = raw.get("target")
    if not (isinstance(target, dict) and isinstance(target_override, dict)
            and ("name" in target_override or "kind" in target_override)):
        return raw
    chosen = {**target, **target_override}
    cls = EventOutcome if chosen.get("kind") == "event" else OUTCOMES.get(chosen.get("name"))
    if cls is None:
        return raw
    kept = {k: v for k, v in target.items() if k in cls.model_fields or k in target_override}
    out = {**raw, "target": kept}
    # The file's registered name, when it is the one derived from the file's own outcome, names the
    # wrong model now: derive it again (a death model must not register as the admission model).
    tracking = raw.get("tracking")
    if (isinstance(tracking, dict) and target.get("name") and chosen.get("name") != target.get("name")
            and tracking.get("registered_model") == "riskstrat-" + str(target["name"]).replace("_", "-")):
        out["tracking"] = {k: v for k, v in tracking.items() if k != "registered_model"}
    return out


def _hint(error: dict, raw: dict) -> str:
    """What to do about a setting the chosen outcome does not have (a shipped config's ``death`` on ``death``)."""
    loc = error["loc"]
    if error["type"] != "extra_forbidden" or len(loc) < 3 or loc[0] != "target" or loc[1] not in UNION_TAGS:
        return ""
    name = (raw.get("target") or {}).get("name", loc[1])
    return f" (the {name} outcome has no setting '{loc[-1]}': remove it)"


def _where(loc: tuple) -> str:
    """``target.death.horizon_day`` -> ``target.horizon_day``: the outcome's union tag is not a key the user wrote."""
    parts = [str(p) for i, p in enumerate(loc) if not (i > 0 and loc[i - 1] == "target" and p in UNION_TAGS)]
    return ".".join(parts) or "(top level)"


def config_to_dict(cfg: BaseModel) -> dict:
    """JSON-able dict of a config (dates and paths as strings), for logging with the run."""
    return cfg.model_dump(mode="json")
