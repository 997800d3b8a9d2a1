"""The promotion gate: the criteria a model version's evaluation must meet before an alias moves to it.

The criteria live in ``models/<registered-name>/gate.yaml`` (written with the defaults below by the
first ``riskstrat evaluate`` of that model; a reviewer edits them). Pure decisions on an evaluation's
metrics and tags: :mod:`riskstrat.pipelines.promote` (``riskstrat promote``) finds the version's latest
evaluation in MLflow (by tag) and checks it here; ``--force --reason`` overrides, and the reason, the
OS user and the time are recorded as tags on the version.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from riskstrat.errors import RiskstratError
from riskstrat.data.io import DataFileError, read_user_text, write_text
from riskstrat.modeling.refit import LABELS_END_TAG  # noqa: F401 (read here, defined once with the refit's tags)

GATE_FILE = "gate.yaml"
# Tags of an evaluation run (written by riskstrat evaluate) that the gate reads besides its metrics.
AS_OF_TAG = "riskstrat.as_of"
PEOPLE_TAG = "riskstrat.people"                     # 'unseen' (not in training or calibration) or 'all'


class GateError(RiskstratError):
    """A gate file cannot be read or is invalid, or a promotion cannot be checked or overridden as asked."""


class OverrideWithoutReasonError(GateError):
    """``--force`` without a reason: an override must say why (the reason is recorded on the version)."""


class Gate(BaseModel):
    """Promotion criteria (see ``models/README.md``)."""

    model_config = ConfigDict(extra="forbid")

    min_events: int = Field(100, ge=1, description="Events the evaluation must have seen (Riley et al.: 100-200 "
                                                   "for stable calibration at validation).")
    max_auroc_drop: float = Field(0.0, ge=0, description="Against the alias's current version: the upper end of "
                                                         "the paired 95% interval of (candidate - champion) AUROC "
                                                         "must not be below -max_auroc_drop.")
    calibration_slope_min: float = 0.8
    calibration_slope_max: float = 1.2
    min_subgroup_auroc: float = Field(0.65, ge=0, le=1, description="Floor for every group with enough events "
                                                                    "(small groups are flagged, not gated).")

    @model_validator(mode="after")
    def _ordered(self) -> "Gate":
        if self.calibration_slope_min >= self.calibration_slope_max:
            raise ValueError("calibration_slope_min must be below calibration_slope_max")
        return self


def default_gate_yaml() -> str:
    """The default gate, with a comment per criterion, as written to a new ``gate.yaml``."""
    g = Gate()
    return (
        "# Promotion gate: `riskstrat promote` refuses a version whose latest evaluation fails any line.\n"
        "# Edit with care and commit the change with the reason; see models/README.md.\n"
        f"min_events: {g.min_events}              # outcome events in the evaluation population\n"
        f"max_auroc_drop: {g.max_auroc_drop}          # vs the current champion: upper 95% bound of the paired "
        "AUROC difference >= -this\n"
        f"calibration_slope_min: {g.calibration_slope_min}\n"
        f"calibration_slope_max: {g.calibration_slope_max}\n"
        f"min_subgroup_auroc: {g.min_subgroup_auroc}     # every age band, sex, deprivation quintile, ethnicity "
        "group and practice with enough events\n")


def load_gate(path: str | Path) -> Gate:
    """The gate in ``path``, or the defaults when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return Gate()
    try:
        return Gate.model_validate(yaml.safe_load(read_user_text(path, what="gate")) or {})
    except DataFileError as exc:
        raise GateError(str(exc)) from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise GateError(f"{path}: {exc}") from None


def write_default_gate(card_dir: str | Path, name: str) -> Path | None:
    """Write ``<card_dir>/<name>/gate.yaml`` with the defaults unless one exists; returns it if written."""
    path = Path(card_dir) / name / GATE_FILE
    if path.exists():
        return None
    return write_text(default_gate_yaml(), path)


@dataclass
class Criterion:
    name: str
    passed: bool
    detail: str


@dataclass
class GateResult:
    criteria: list[Criterion] = field(default_factory=list)
    evaluation_run_id: str | None = None
    inherited_from: str | None = None  # a refit judged by the evaluation of this version (the one it refits)

    @property
    def passed(self) -> bool:
        return bool(self.criteria) and all(c.passed for c in self.criteria)

    def failures(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]


def check_gate(metrics: dict, gate: Gate, *, champion_version: str | None = None,
               compared_version: str | None = None) -> list[Criterion]:
    """Each criterion against an evaluation's flat metrics (:attr:`Evaluation.metrics`).

    ``champion_version`` is the version the alias points at now (None: the model has none yet);
    ``compared_version`` the version the evaluation compared against (``--against``).
    """
    def value(key: str) -> float | None:
        v = metrics.get(key)
        return None if v is None or v != v else float(v)

    out = []
    events = value("n_events") or 0.0
    out.append(Criterion("minimum events", events >= gate.min_events,
                         f"{events:,.0f} events in the evaluation (need {gate.min_events:,})"))
    if champion_version is None:
        out.append(Criterion("not worse than the champion", True, "no current version to compare with"))
    elif compared_version != str(champion_version):
        out.append(Criterion("not worse than the champion", False,
                             f"the evaluation was not compared with the current version {champion_version}"
                             + (f" (it was compared with version {compared_version})" if compared_version else "")
                             + ": run riskstrat evaluate --against NAME@champion"))
    else:
        d, high = value("minus_champion.auroc"), value("minus_champion.auroc_ci_high")
        low = value("minus_champion.auroc_ci_low")
        ok = high is not None and high >= -gate.max_auroc_drop
        out.append(Criterion("not worse than the champion", ok,
                             f"AUROC difference {d:+.3f} (paired 95% CI {low:+.3f} to {high:+.3f}); "
                             f"upper bound must be >= {-gate.max_auroc_drop:+.3f}" if d is not None
                             else "no AUROC difference recorded"))
    slope = value("candidate.calibration_slope")
    ok = slope is not None and gate.calibration_slope_min <= slope <= gate.calibration_slope_max
    out.append(Criterion("calibration slope", ok, (f"{slope:.2f}" if slope is not None else "missing")
                         + f" (must be within {gate.calibration_slope_min}-{gate.calibration_slope_max})"))
    floor = value("subgroup.min_auroc")
    ok = floor is not None and floor >= gate.min_subgroup_auroc
    out.append(Criterion("subgroup AUROC floor", ok, (f"lowest {floor:.3f}" if floor is not None else "missing")
                         + f" among groups with enough events (floor {gate.min_subgroup_auroc})"))
    return out


def check_timing(as_of: str | None, labels_end: str | None) -> Criterion:
    """The evaluation date must be on or after the end of the model's last training label window
    (``labels_end``: last training date + horizon; labels count events in ``[T, T + horizon)``), or its
    outcomes overlap those the model was trained on and its figures are in-sample."""
    name = "evaluated after the training labels"
    if not as_of or not labels_end:
        return Criterion(name, False, "the evaluation does not record when the model's training labels end (made "
                                      "before riskstrat recorded it, or the model records no training dates): "
                                      "evaluate it again with this version of riskstrat")
    if dt.date.fromisoformat(as_of) < dt.date.fromisoformat(labels_end):
        return Criterion(name, False, f"evaluated at {as_of}, before {labels_end} (the end of the model's last "
                                      f"training label window): in-sample figures; evaluate at {labels_end} or later")
    return Criterion(name, True, f"evaluated at {as_of}, on or after {labels_end} (the end of the model's last "
                                 f"training label window)")


def require_reason(*, force: bool, reason: str | None) -> None:
    """Refuse (:class:`OverrideWithoutReasonError`) a forced promotion that gives no reason."""
    if force and not (reason and reason.strip()):
        raise OverrideWithoutReasonError("--force needs --reason \"...\": the reason is recorded on the model version; "
                                         "nothing was promoted")
