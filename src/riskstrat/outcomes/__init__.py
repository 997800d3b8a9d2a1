"""Outcomes: what a model predicts, defined in one place.

Each outcome is a small config object with one job: label the people eligible at an index date T
over ``[T, T + horizon_days)`` (censoring people whose follow-up stops early), say in words what it
is, and name the synthetic ground truth's column where the generator has one. ``target:`` in a
training config is one of them, chosen by ``name`` (or ``kind: event`` for one declared in YAML):

>>> outcome = parse_outcome({"name": "unplanned_hospital_use"})
>>> outcome.words
'an unplanned admission or A&E attendance or death'
>>> parse_outcome({"name": "emergency_admission", "death": "exclude"}).truth_column
'p_emergency_admission'

Adding an outcome is one new class in ``_builtin.py`` (or a module of its own) listed in
:data:`OUTCOMES`; training, evaluation, tracking and the lists read everything else from it.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, TypeAdapter, field_validator

from riskstrat.errors import InvalidInputError
from riskstrat.outcomes._base import DeathHandling, Outcome, Window
from riskstrat.outcomes._builtin import (
    Death,
    EmergencyAdmission,
    EventOutcome,
    HighCost,
    MissingCostsError,
    SocialCareEntry,
    UnplannedHospitalUse,
    check_costs_known,
)

__all__ = ["OUTCOMES", "DeathHandling", "MissingCostsError", "Outcome", "OutcomeConfig", "Window",
           "check_costs_known", "parse_outcome", "outcome_words", "Death", "EmergencyAdmission", "EventOutcome", "HighCost", "SocialCareEntry", "UnplannedHospitalUse"]

OUTCOMES: dict[str, type[Outcome]] = {cls.model_fields["name"].default: cls for cls in (
    EmergencyAdmission, UnplannedHospitalUse, Death, HighCost, SocialCareEntry)}


class _Unknown(BaseModel):
    """Stands for a ``target`` that names no outcome, so that the error says which name and what exists."""

    model_config = ConfigDict(extra="allow")

    name: Any = None

    @field_validator("name")
    @classmethod
    def _refuse(cls, name: Any):
        raise InvalidInputError(f"unknown target {name!r}; choose one of {list(OUTCOMES)}, or declare your own with "
                         f"kind: event (table, where, words)")


def _tag(value: Any) -> str:
    get = value.get if isinstance(value, dict) else lambda k, d=None: getattr(value, k, d)
    if get("kind") == "event":
        return "event"
    name = get("name", "emergency_admission")
    return name if name in OUTCOMES else "unknown"


UNION_TAGS = (*OUTCOMES, "event", "unknown")

OutcomeConfig = Annotated[
    Union[tuple(Annotated[cls, Tag(name)] for name, cls in OUTCOMES.items())
          + (Annotated[EventOutcome, Tag("event")], Annotated[_Unknown, Tag("unknown")])],
    Discriminator(_tag),
]

_ADAPTER = TypeAdapter(OutcomeConfig)


def parse_outcome(value: dict | Outcome) -> Outcome:
    """An outcome from its settings (``{"name": "death"}``) or as it is."""
    return value if isinstance(value, Outcome) else _ADAPTER.validate_python(value)


def outcome_words(metadata: dict | None, target: str = "emergency_admission") -> str:
    """The words for a fitted model's outcome: from its metadata, else from its target's default."""
    described = (metadata or {}).get("outcome") or {}
    if described.get("words"):
        return described["words"]
    return parse_outcome({"name": target}).words if target in OUTCOMES else target.replace("_", " ")
