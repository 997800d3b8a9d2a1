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
from riskstrat.evaluation._evaluate import GROUP_KEY, TIER_KEY
from riskstrat.evaluation._groups import ATTRIBUTES
from riskstrat.evaluation.metrics import NOT_ESTIMABLE, _poisson_ratio_interval
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
    """Promotion criteria (see ``models/README.md``).

    How the intervals are read. Criteria on the whole evaluation (calibration slope, O/E) ask "is it
    good enough?", so the model must show it, as an equivalence test does (two one-sided tests at
    5%, Schuirmann 1987): the 90% interval must lie within the acceptable range (a slope of 0.84 with
    95% interval 0.75-0.94 fails a 0.8-1.2 range). Criteria on groups (tiers,
    age bands, practices...) have few events each, where no model could show acceptability, so a
    group fails when it is shown unacceptable: its interval lies wholly outside the range, or wholly
    below the comparison. Against the champion the candidate must be shown not worse than it by more
    than ``auroc_margin`` (non-inferiority: the lower bound of the paired interval), not merely "not
    significantly worse", which a small evaluation passes whatever the model.
    """

    model_config = ConfigDict(extra="forbid")

    min_events: int = Field(100, ge=1, description="Events the evaluation must have seen (Riley et al.: 100-200 "
                                                   "for stable calibration at validation).")
    auroc_margin: float = Field(0.02, ge=0, description="Non-inferiority margin against the alias's current "
                                                        "version: the lower end of the paired 95% interval of "
                                                        "(candidate - champion) AUROC must be at least -auroc_margin.")
    prefer_simpler: bool = Field(False, description="Fail a candidate that is not better than the simpler model "
                                                    "(logistic regression) beyond its interval: the lower end of "
                                                    "the paired interval must be above 0.")
    calibration_slope_min: float = 0.8
    calibration_slope_max: float = 1.2
    o_e_min: float = Field(0.8, gt=0, description="Observed/expected: the acceptable range's lower end.")
    o_e_max: float = Field(1.25, gt=0, description="Observed/expected: the acceptable range's upper end.")
    tiers: bool = Field(True, description="Each tier's O/E interval must reach the range [o_e_min, o_e_max].")
    subgroup_calibration: bool = Field(True, description="Each group with enough events: its O/E interval must "
                                                         "reach the range [o_e_min, o_e_max].")
    subgroup_vs_prior_use: bool = Field(True, description="Each group with enough events: the candidate's AUROC "
                                                          "must not be shown below the prior-use rule's in that "
                                                          "group (upper end of the paired interval >= 0).")
    subgroup_auroc_max_gap: float | None = Field(None, ge=0, description="Optional relative floor: each group's "
                                                 "AUROC upper bound >= the overall AUROC - this.")
    min_subgroup_auroc: float | None = Field(None, ge=0, le=1, description="Optional absolute floor: each group's "
                                             "AUROC upper bound >= this (age bands are lower by construction).")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "max_auroc_drop" in data:
            raise ValueError("max_auroc_drop was replaced by auroc_margin (the lower end of the paired interval "
                             "must be at least -auroc_margin, a non-inferiority margin; max_auroc_drop read the "
                             "upper end): rename it and choose the margin")
        return data

    @model_validator(mode="after")
    def _ordered(self) -> "Gate":
        if self.calibration_slope_min >= self.calibration_slope_max:
            raise ValueError("calibration_slope_min must be below calibration_slope_max")
        if self.o_e_min >= self.o_e_max:
            raise ValueError("o_e_min must be below o_e_max")
        return self


def default_gate_yaml() -> str:
    """The default gate, with a comment per criterion, as written to a new ``gate.yaml``."""
    g = Gate()
    return (
        "# Promotion gate: `riskstrat promote` refuses a version whose latest evaluation fails any line.\n"
        "# Whole-evaluation criteria need the 90% interval inside the range (equivalence at 5% each side); group\n"
        "# criteria fail a group whose 95% interval lies wholly outside it. Edit with care and commit the change with the reason; see models/README.md.\n"
        f"min_events: {g.min_events}              # outcome events in the evaluation population\n"
        f"auroc_margin: {g.auroc_margin}          # vs the current champion: lower 95% bound of the paired AUROC "
        "difference >= -this (non-inferiority)\n"
        f"prefer_simpler: {str(g.prefer_simpler).lower()}       # true: fail a candidate not better than logistic "
        "regression beyond its interval\n"
        f"calibration_slope_min: {g.calibration_slope_min}   # the slope's 90% interval must lie within min-max\n"
        f"calibration_slope_max: {g.calibration_slope_max}\n"
        f"o_e_min: {g.o_e_min}                # observed/expected: overall interval within min-max\n"
        f"o_e_max: {g.o_e_max}\n"
        f"tiers: {str(g.tiers).lower()}                 # each tier's O/E interval must reach min-max\n"
        f"subgroup_calibration: {str(g.subgroup_calibration).lower()}  # each group with enough events: O/E "
        "interval must reach min-max\n"
        f"subgroup_vs_prior_use: {str(g.subgroup_vs_prior_use).lower()} # each group with enough events: AUROC not "
        "shown below the prior-use rule's\n"
        "subgroup_auroc_max_gap: null   # optional: each group's AUROC upper bound >= overall AUROC - this\n"
        "min_subgroup_auroc: null       # optional absolute floor on each group's AUROC upper bound\n")


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


def _groups(metrics: dict, prefix: str) -> dict[str, dict[str, float]]:
    """``{group words: {metric: value}}`` from flat keys ``<prefix>.<...>.<metric>``: for the subgroups
    ``group.<attribute>.<group>.<metric>`` (words "age band 40-55"), for tiers ``tier.<tier>.<metric>``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if not key.startswith(prefix + ".") or value is None or value != value:
            continue
        name, _, metric = key[len(prefix) + 1:].rpartition(".")
        if not name:
            continue
        if prefix == GROUP_KEY:
            attribute = next((a for a in ATTRIBUTES if name.startswith(a + ".")), None)
            if attribute is None:
                continue
            name = f"{attribute} {name[len(attribute) + 1:]}"
        out.setdefault(name, {})[metric] = float(value)
    return out


def _listed(failures: list[str], *, most: int = 4) -> str:
    more = f"; and {len(failures) - most} more" if len(failures) > most else ""
    return "; ".join(failures[:most]) + more


_Z95, _Z90 = 1.959963984540054, 1.6448536269514722


def _range_check(name: str, value: float | None, low: float | None, high: float | None, *, lo: float, hi: float,
                 what: str) -> Criterion:
    """Whole-evaluation criterion: the 90% interval (``low``, ``high``) must lie within [lo, hi]."""
    if value is None:
        return Criterion(name, False, f"{what} missing")
    if low is None or high is None:
        return Criterion(name, False, f"{what} {value:.2f} has no interval (too few events): it cannot be shown "
                                      f"within {lo:g}-{hi:g}")
    ok = lo <= low and high <= hi
    return Criterion(name, ok, f"{what} {value:.2f} (90% CI {low:.2f} to {high:.2f}); the 90% interval must lie "
                               f"within {lo:g}-{hi:g} (equivalence at 5% each side)")


def _slope_90(metrics_value) -> tuple[float | None, float | None]:
    """The slope's 90% Wald interval from its 95% one (same standard error)."""
    slope, low, high = (metrics_value(f"candidate.calibration_slope{k}") for k in ("", "_ci_low", "_ci_high"))
    if slope is None or low is None or high is None:
        return None, None
    se = (high - low) / (2 * _Z95)
    return slope - _Z90 * se, slope + _Z90 * se


def _o_e_90(metrics_value) -> tuple[float | None, float | None]:
    """O/E's exact Poisson 90% interval from the observed count and the ratio (expected = O / ratio)."""
    ratio, observed = metrics_value("candidate.o_e_ratio"), metrics_value("candidate.n_positive")
    if ratio is None or observed is None or ratio <= 0:
        return None, None
    low, high = _poisson_ratio_interval(observed, observed / ratio, alpha=0.10)
    return low, high


def check_gate(metrics: dict, gate: Gate, *, champion_version: str | None = None,
               compared_version: str | None = None) -> list[Criterion]:
    """Each criterion against an evaluation's flat metrics (:attr:`Evaluation.metrics`).

    ``champion_version`` is the version the alias points at now (None: the model has none yet);
    ``compared_version`` the version the evaluation compared against (``--against``). A failed
    criterion's detail names the group and its numbers (the report's verdict line shows it).
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
        d, low, high = (value(f"minus_champion.auroc{k}") for k in ("", "_ci_low", "_ci_high"))
        ok = low is not None and low >= -gate.auroc_margin
        out.append(Criterion("not worse than the champion", ok,
                             f"AUROC difference from version {champion_version} {d:+.3f} (paired 95% CI {low:+.3f} to "
                             f"{high:+.3f}); the lower bound must be >= {-gate.auroc_margin:+.3f} (non-inferiority "
                             f"margin {gate.auroc_margin:g})" if d is not None and low is not None
                             else "no AUROC difference with an interval recorded"))
    if gate.prefer_simpler:
        d, low, high = (value(f"minus_logistic.auroc{k}") for k in ("", "_ci_low", "_ci_high"))
        if d is None:
            out.append(Criterion("better than the simpler model", True, "no simpler model (logistic regression) "
                                                                        "in the evaluation to compare with"))
        else:
            ok = low is not None and low > 0
            out.append(Criterion("better than the simpler model", ok,
                                 f"AUROC difference from logistic regression {d:+.3f} (paired 95% CI "
                                 + (f"{low:+.3f} to {high:+.3f})" if low is not None else "not available)")
                                 + ("" if ok else ": no better within its interval, so the gate prefers the "
                                                  "simpler model (prefer_simpler)")))
    code = value("candidate.calibration_slope_not_estimable")
    if code:
        reason = {v: k for k, v in NOT_ESTIMABLE.items()}.get(int(code), "unknown reason")
        out.append(Criterion("calibration slope", False, f"not estimable: {reason}"))
    else:
        out.append(_range_check("calibration slope", value("candidate.calibration_slope"), *_slope_90(value),
                                lo=gate.calibration_slope_min, hi=gate.calibration_slope_max, what="slope"))
    out.append(_range_check("calibration in the large", value("candidate.o_e_ratio"), *_o_e_90(value),
                            lo=gate.o_e_min, hi=gate.o_e_max, what="O/E"))
    if gate.tiers:
        tiers = _groups(metrics, TIER_KEY)
        failures = [f"tier {t}: O/E {m['o_e_ratio']:.2f} (95% CI {m['o_e_ci_low']:.2f} to {m['o_e_ci_high']:.2f}), "
                    f"{m.get('observed', float('nan')):,.0f} observed against {m.get('expected', float('nan')):,.1f} "
                    "expected"
                    for t, m in tiers.items() if {"o_e_ratio", "o_e_ci_low", "o_e_ci_high"} <= m.keys()
                    and (m["o_e_ci_high"] < gate.o_e_min or m["o_e_ci_low"] > gate.o_e_max)]
        out.append(Criterion("calibration by tier", bool(tiers) and not failures,
                             _listed(failures) + f" (each tier's interval must reach {gate.o_e_min:g}-{gate.o_e_max:g})"
                             if failures else f"every tier's O/E interval reaches {gate.o_e_min:g}-{gate.o_e_max:g}"
                             if tiers else "no O/E by tier recorded"))
    groups = _groups(metrics, GROUP_KEY)
    if gate.subgroup_calibration:
        failures = [f"{g}: O/E {m['o_e_ratio']:.2f} (95% CI {m['o_e_ci_low']:.2f} to {m['o_e_ci_high']:.2f})"
                    for g, m in groups.items() if {"o_e_ratio", "o_e_ci_low", "o_e_ci_high"} <= m.keys()
                    and (m["o_e_ci_high"] < gate.o_e_min or m["o_e_ci_low"] > gate.o_e_max)]
        out.append(Criterion("calibration within groups", bool(groups) and not failures,
                             _listed(failures) + f" (each group's interval must reach {gate.o_e_min:g}-{gate.o_e_max:g})"
                             if failures else f"every group with enough events has an O/E interval reaching "
                             f"{gate.o_e_min:g}-{gate.o_e_max:g}" if groups else "no groups with enough events"))
    if gate.subgroup_vs_prior_use:
        compared = {g: m for g, m in groups.items() if "minus_prior_use_ci_high" in m}
        failures = [f"{g}: AUROC {m['auroc']:.3f} against prior use's {m['auroc'] - m['minus_prior_use']:.3f}, "
                    f"difference {m['minus_prior_use']:+.3f} (95% CI {m['minus_prior_use_ci_low']:+.3f} to "
                    f"{m['minus_prior_use_ci_high']:+.3f})"
                    for g, m in compared.items() if m["minus_prior_use_ci_high"] < 0]
        out.append(Criterion("discrimination within groups", bool(compared) and not failures,
                             _listed(failures) + " (shown worse than the prior-use rule in that group)" if failures
                             else f"in none of {len(compared)} groups with enough events is the candidate shown worse "
                             "than the prior-use rule" if compared
                             else "no group compared with the prior-use rule (no prior-use score in the evaluation)"))
    for name, floor in (("subgroup AUROC gap", None if gate.subgroup_auroc_max_gap is None
                         else (value("candidate.auroc") or 0.0) - gate.subgroup_auroc_max_gap),
                        ("subgroup AUROC floor", gate.min_subgroup_auroc)):
        if floor is None:
            continue
        failures = [f"{g}: AUROC {m['auroc']:.3f} (95% CI {m.get('auroc_ci_low', float('nan')):.3f} to "
                    f"{m.get('auroc_ci_high', m['auroc']):.3f})"
                    for g, m in groups.items() if "auroc" in m and m.get("auroc_ci_high", m["auroc"]) < floor]
        out.append(Criterion(name, bool(groups) and not failures,
                             (_listed(failures) + " below" if failures else "every group's AUROC interval reaches")
                             + f" the floor {floor:.3f}" if groups else "no groups with enough events"))
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
