"""Outcome definitions (riskstrat.outcomes) on hand-made records, and how a config chooses one.

T is 2024-01-01 and the horizon 365 days: the label window is T .. T+364. ``at(n)`` is n days after T.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from riskstrat.modeling.config import ConfigError, TrainConfig, load_config
from riskstrat.outcomes import OUTCOMES, EventOutcome, UnplannedHospitalUse, outcome_words, parse_outcome

T = pd.Timestamp("2024-01-01")
H = 365
EXTRACT_END = "2025-06-30"


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def person(pid: str, **kw) -> dict:
    return {"person_id": pid, "birth_date": "1950-01-01", **kw}


def spell(pid: str, day: int, method: str) -> dict:
    return {"person_id": pid, "admission_date": at(day), "discharge_date": at(day + 2), "admission_method": method}


def labels(outcome, records) -> dict[str, float | None]:
    ids = pd.Index(records.persons["person_id"])
    y = parse_outcome(outcome).labels(records, T, ids, extract_end=EXTRACT_END)
    return {pid: (None if np.isnan(v) else v) for pid, v in y.items()}


@pytest.fixture(scope="module")
def hospital_use(make_records):
    return make_records(
        persons=[person(p) for p in ("emergency", "ae_only", "ae_before_T", "unknown_method", "elective", "none")]
        + [person("died", death_date=at(40)), person("left_quiet", registration_end=at(100)),
           person("left_after_ae", registration_end=at(100))],
        inpatient_spells=[spell("emergency", 10, "emergency"), spell("unknown_method", 20, "unknown"),
                          spell("elective", 30, "elective")],
        ae_attendances=[{"person_id": "ae_only", "arrival_date": at(H - 1)},
                        {"person_id": "ae_before_T", "arrival_date": at(-1)},
                        {"person_id": "left_after_ae", "arrival_date": at(50)}],
    )


def test_unplanned_hospital_use_is_an_unplanned_admission_or_an_ae_attendance(hospital_use):
    # A stay of unknown method counts (not recorded as planned: the data this outcome is for rarely record
    # the method); an elective one never does.
    assert labels({"name": "unplanned_hospital_use"}, hospital_use) == {
        "emergency": 1, "ae_only": 1, "ae_before_T": 0, "unknown_method": 1, "elective": 0, "none": 0,
        "died": 1, "left_quiet": None, "left_after_ae": 1}
    only_emergency = labels({"name": "unplanned_hospital_use", "admission_methods": ["emergency"]}, hospital_use)
    assert only_emergency["unknown_method"] == 0 and only_emergency["emergency"] == 1
    # Death handled as for emergency admission.
    excluded = labels({"name": "unplanned_hospital_use", "death": "exclude"}, hospital_use)
    assert excluded["died"] is None and excluded["ae_only"] == 1
    assert labels({"name": "unplanned_hospital_use", "death": "negative"}, hospital_use)["died"] == 0


def test_an_unknown_admission_method_never_counts_as_emergency_unless_configured(hospital_use):
    y = labels({"name": "emergency_admission", "death": "negative"}, hospital_use)
    assert (y["emergency"], y["unknown_method"], y["elective"], y["ae_only"]) == (1, 0, 0, 0)
    y = labels({"name": "emergency_admission", "death": "negative",
                "admission_methods": ["emergency", "unknown"]}, hospital_use)
    assert (y["emergency"], y["unknown_method"], y["elective"]) == (1, 1, 0)
    with pytest.raises(ValidationError, match="admission_methods"):
        parse_outcome({"name": "emergency_admission", "admission_methods": ["urgent"]})


def test_words_name_the_real_outcome():
    assert parse_outcome({"name": "emergency_admission"}).words == "an emergency admission or death"
    assert parse_outcome({"name": "emergency_admission", "death": "exclude"}).words == "an emergency admission"
    assert parse_outcome({"name": "unplanned_hospital_use", "death": "negative"}).words == \
        "an unplanned admission or A&E attendance"
    assert parse_outcome({"name": "unplanned_hospital_use", "death": "negative",
                          "admission_methods": ["emergency"]}).words == "an emergency admission or A&E attendance"
    assert parse_outcome({"name": "high_cost", "top_fraction": 0.1}).words == "being in the highest-cost 10%"
    # A fitted model carries its outcome's words; an older one without them gets its target's default.
    assert outcome_words({"outcome": {"words": "a fall"}}, "emergency_admission") == "a fall"
    assert outcome_words({}, "emergency_admission") == "an emergency admission or death"


def test_truth_columns_exist_only_where_the_generator_has_one():
    assert parse_outcome({"name": "emergency_admission"}).truth_column == "p_emergency_or_death"
    assert parse_outcome({"name": "emergency_admission", "death": "negative"}).truth_column == "p_emergency_admission"
    assert parse_outcome({"name": "emergency_admission", "admission_methods": ["emergency", "unknown"]}).truth_column is None
    assert parse_outcome({"name": "unplanned_hospital_use"}).truth_column is None
    assert parse_outcome({"name": "high_cost"}).truth_column == "p_high_cost"
    assert parse_outcome({"name": "high_cost", "top_fraction": 0.1}).truth_column is None


CARE_HOME = {"kind": "event", "name": "care_home_admission", "words": "a care-home admission",
             "table": "social_care", "where": {"service_type": ["residential", "nursing"]}}


def test_an_event_outcome_declared_in_configuration_alone(make_records):
    def service(pid, kind, day):
        return {"person_id": pid, "service_type": kind, "start_date": at(day), "weekly_cost": 500.0}

    records = make_records(
        persons=[person(p) for p in ("nursing", "residential_late", "home_care", "before_T", "none")]
        + [person("died", death_date=at(5))],
        social_care=[service("nursing", "nursing", 3), service("residential_late", "residential", H),
                     service("home_care", "home_care", 10), service("before_T", "residential", -30)],
    )
    assert labels(CARE_HOME, records) == {"nursing": 1, "residential_late": 0, "home_care": 0, "before_T": 0,
                                          "none": 0, "died": None}  # death: exclude is the event default
    assert labels({**CARE_HOME, "death": "composite"}, records)["died"] == 1
    # A filter on a bool column, and the date column chosen by the outcome.
    records = make_records(
        persons=[person(p) for p in ("dna", "attended", "dna_late")],
        outpatient_appointments=[{"person_id": "dna", "appointment_date": at(1), "attended": False},
                                 {"person_id": "attended", "appointment_date": at(1), "attended": True},
                                 {"person_id": "dna_late", "appointment_date": at(H + 3), "attended": False}])
    missed = {"kind": "event", "name": "missed_appointment", "words": "a missed outpatient appointment",
              "table": "outpatient_appointments", "where": {"attended": False}}
    assert labels(missed, records) == {"dna": 1, "attended": 0, "dna_late": 0}


@pytest.mark.parametrize(("settings", "message"), [
    ({**CARE_HOME, "table": "visits"}, "not an event table"),
    ({**CARE_HOME, "where": {"service": "nursing"}}, "social_care has no column 'service'"),
    ({**CARE_HOME, "where": {"service_type": "care_home"}}, r"values \['care_home'\] not in its reference list"),
    ({**CARE_HOME, "date_column": "weekly_cost"}, "no date column 'weekly_cost'"),
    ({**CARE_HOME, "name": "Care Home"}, "name"),
    ({k: v for k, v in CARE_HOME.items() if k != "words"}, "words"),
])
def test_an_event_outcome_is_checked_against_the_schema(settings, message):
    with pytest.raises(ValidationError, match=message):
        parse_outcome(settings)


def test_a_config_chooses_its_outcome_by_name_or_declares_one(tmp_path):
    cfg = load_config(None, ["target.name=unplanned_hospital_use", "target.death=exclude"])
    assert isinstance(cfg.target, UnplannedHospitalUse) and cfg.target.death == "exclude"
    assert cfg.registered_model_name == "riskstrat-unplanned-hospital-use"
    path = tmp_path / "run.yaml"
    path.write_text("target:\n  kind: event\n  name: care_home_admission\n  words: a care-home admission\n"
                    "  table: social_care\n  where: {service_type: [residential, nursing]}\n")
    cfg = load_config(path)
    assert isinstance(cfg.target, EventOutcome) and cfg.target.where == {"service_type": ["residential", "nursing"]}
    assert cfg.registered_model_name == "riskstrat-care-home-admission"
    # A setting another outcome has is a typo here, and the message names it without the union's tag.
    with pytest.raises(ConfigError, match=r"target\.top_fraction: Extra inputs are not permitted"):
        load_config(None, ["target.name=death", "target.top_fraction=0.1"])
    assert TrainConfig().target.name == "emergency_admission"
    assert set(OUTCOMES) == {"emergency_admission", "unplanned_hospital_use", "death", "high_cost",
                             "social_care_entry"}


def test_a_shipped_config_switched_to_another_outcome_drops_what_does_not_apply():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "configs"
    cfg = load_config(configs / "emergency_admission.yaml", ["target.name=death"])
    assert cfg.target.name == "death" and not hasattr(cfg.target, "death")
    assert cfg.registered_model_name == "riskstrat-death"  # not registered as the admission model
    cfg = load_config(configs / "high_cost.yaml", ["target.name=unplanned_hospital_use"])
    assert cfg.target.death == "composite" and cfg.registered_model_name == "riskstrat-unplanned-hospital-use"
    # A setting given on the command line is never dropped: it is refused, with what to do.
    with pytest.raises(ConfigError, match=r"target\.death: .*the death outcome has no setting 'death': remove it"):
        load_config(None, ["target.name=death", "target.death=exclude"])


@pytest.mark.parametrize(("blank", "rows", "refused"), [
    ([("inpatient_spells", "cost"), ("gp_contacts", "cost")], {"inpatient_spells": 5, "gp_contacts": 9,
                                                              "social_care": 3}, True),   # social care alone
    ([("inpatient_spells", "cost")], {"inpatient_spells": 5, "gp_contacts": 9}, False),   # GP costs known
    ([("gp_contacts", "cost")], {"inpatient_spells": 0, "gp_contacts": 9}, True),         # an empty table has none
    ([], {"social_care": 3}, True),                                                       # no health-care table
])
def test_a_high_cost_outcome_needs_a_known_health_care_cost(blank, rows, refused):
    from riskstrat.outcomes import HighCost, MissingCostsError, check_costs_known, parse_outcome

    check_costs_known(parse_outcome({"name": "emergency_admission"}), row_counts=rows, blank_costs=blank)
    if refused:
        with pytest.raises(MissingCostsError, match="needs health-care costs.*unknown, not zero"):
            check_costs_known(HighCost(), row_counts=rows, blank_costs=blank)
    else:
        check_costs_known(HighCost(), row_counts=rows, blank_costs=blank)
