"""``riskstrat promote``: an alias moved to a registered version whose latest evaluation passes its gate.

:mod:`riskstrat.evaluation.gate` holds the gate file and its criteria (pure decisions on an
evaluation's metrics and tags); here the registry is read for the version, its evaluation and the
alias's current version, the alias is moved, and a forced promotion is recorded on the version.
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass
from pathlib import Path

from riskstrat.evaluation.gate import (AS_OF_TAG, GATE_FILE, LABELS_END_TAG, PEOPLE_TAG, Criterion, GateError,
                                       GateResult, check_gate, check_timing, load_gate, require_reason)
from riskstrat.modeling.refit import REFIT_OF_VERSION_TAG
from riskstrat.registry import tracking


def check_promotion(name: str, version: str | int, *, alias: str = "champion", uri: str | None = None,
                    card_dir: str | Path = "models") -> GateResult:
    """The gate of ``name`` against the latest evaluation of ``version`` in MLflow.

    Refuses (:class:`riskstrat.registry.tracking.RegistryError`) a version the registry does not hold. Besides
    the gate file's criteria, the evaluation must be dated after the model's training labels
    (:func:`riskstrat.evaluation.gate.check_timing`). A refit for deployment (tagged
    ``riskstrat.refit_of_version``) is checked against its own latest evaluation when that one is dated on
    or after its labels end; otherwise
    against the latest evaluation of the version it refits (``inherited_from``), whose timing is that
    version's: the refit has the same settings, fitted on later labels.
    """
    tracking.require_version(name, version, uri=uri)
    gate = load_gate(Path(card_dir) / name / GATE_FILE)
    run = tracking.find_evaluation(name, version, uri=uri)
    # A refit (riskstrat.modeling.refit) is judged by its own evaluation once one is out of sample in time (dated on
    # or after its labels end, which are the data end's); until then by the evaluation of the version it refits.
    parent = tracking.version_tags(name, version, uri=uri).get(REFIT_OF_VERSION_TAG)
    inherited_from = None
    if parent and (run is None or not check_timing(run.data.tags.get(AS_OF_TAG),
                                                   run.data.tags.get(LABELS_END_TAG)).passed):
        inherited = tracking.find_evaluation(name, parent, uri=uri)
        if inherited is not None:
            run, inherited_from = inherited, parent
    if run is None:
        also = (f" (nor of version {parent}, whose settings it refits: evaluate that one, and the refit inherits it)"
                if parent else "")
        return GateResult([Criterion("evaluation exists", False,
                                     f"no evaluation of {name} version {version} in MLflow{also}: run riskstrat evaluate "
                                     f"--model {name}/{parent or version} --against {name}@{alias} --data DIR "
                                     f"--as-of DATE")])
    current = tracking.load_champion_version(name, alias=alias, uri=uri)
    if current in (str(version), inherited_from):
        # Re-pointing the alias at the version it holds, or moving it from a version to its own refit
        # (the same settings on later data), compares with nothing.
        current = None
    tags = run.data.tags
    people = {"unseen": "people not used in training", "all": "all people, those used in training included"}
    whose = (f"inherited from version {inherited_from}, whose settings version {version} refits on the data up to "
             f"their end (evaluate version {version} at its labels end or later for its own check): "
             if inherited_from else "")
    criteria = [Criterion("evaluation exists", True, f"{whose}run {run.info.run_id} at {tags.get(AS_OF_TAG)}"
                          + (f" on {people[tags[PEOPLE_TAG]]}" if tags.get(PEOPLE_TAG) in people else "")),
                check_timing(tags.get(AS_OF_TAG), tags.get(LABELS_END_TAG))]
    criteria += check_gate(run.data.metrics, gate, champion_version=current,
                           compared_version=tags.get("riskstrat.against_version"))
    return GateResult(criteria, run.info.run_id, inherited_from=inherited_from)


def record_override(name: str, version: str | int, *, reason: str, failures: list[Criterion],
                    uri: str | None = None) -> dict:
    """Record a forced promotion on the version: the reason, the OS user, the time, what failed."""
    tags = {"riskstrat.gate_override.reason": reason, "riskstrat.gate_override.user": getpass.getuser(),
            "riskstrat.gate_override.time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "riskstrat.gate_override.failed": "; ".join(c.name for c in failures) or "none"}
    tracking.tag_model_version(name, version, tags, uri=uri)
    return tags


class GateFailedError(GateError):
    """A version's latest evaluation does not pass its gate, and the promotion was not forced."""


@dataclass
class Promotion:
    """What :func:`promote` did: the alias moved (``moved``: :func:`riskstrat.registry.tracking.promote`'s
    record), the gate's verdict, and the override recorded on the version (None: the gate passed)."""

    moved: dict
    verdict: GateResult
    override: dict | None = None


def promote(name: str, version: str | int, *, alias: str = "champion", uri: str | None = None,
            card_dir: str | Path = "models", force: bool = False, reason: str | None = None) -> Promotion:
    """Point ``alias`` at ``version`` of ``name`` if its latest evaluation passes the model's gate
    (``card_dir/<name>/gate.yaml``; :func:`check_promotion`).

    Refuses a version tagged ``riskstrat.degenerate`` (:class:`riskstrat.modeling.guards.DegenerateModelError`)
    before its evaluation is looked at, ``force`` without a ``reason``
    (:class:`riskstrat.evaluation.gate.OverrideWithoutReasonError`) before anything is looked up, and a
    version that fails the gate (:class:`GateFailedError`, naming each failed criterion). With ``force``
    and a reason both pass, and the reason, the OS user, the time and what failed are recorded on the
    version (:func:`record_override`).
    """
    if not force:  # a degenerate model is refused before its evaluation is even looked at
        tracking.refuse_degenerate(name, version, what=f"make it {alias}", override="pass --force --reason \"...\"",
                                   uri=uri)
    require_reason(force=force, reason=reason)  # a refusal before anything is looked up
    verdict = check_promotion(name, version, alias=alias, uri=uri, card_dir=card_dir)
    if not verdict.passed and not force:
        lines = "\n".join(f"  - {c.name}: {c.detail}" for c in verdict.failures())
        raise GateFailedError(f"{name} version {version} does not pass the promotion gate "
                              f"({Path(card_dir) / name / GATE_FILE}):\n{lines}\nnothing was promoted; override with "
                              f"--force --reason \"...\" (recorded on the version)")
    moved = tracking.promote(name, version, alias=alias, uri=uri, force=force)
    override = None
    if not verdict.passed:
        override = record_override(name, version, reason=reason, failures=verdict.failures(), uri=uri)
    return Promotion(moved, verdict, override)
