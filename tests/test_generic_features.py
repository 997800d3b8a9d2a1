"""Generic covariates (riskstrat.features.generic): definitions, engines equal to the reference, missing costs,
configured windows, the spec stored with a model and built again at scoring, and their words."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _spark import spark  # noqa: F401 - the fixture (PySpark imported only when a test asks for it)

from riskstrat.modeling.config import FeaturesConfig
from riskstrat.features.engine import PandasEngine
from riskstrat.features.duckdb import DuckDBEngine
from riskstrat.features.generic import GenericFeaturesConfig, build_spec, generic_spec, group_values, parse_name
from riskstrat.features.spec import CLINICAL, FeatureSpec, FeatureSpecError, spec_hash
from riskstrat.features.reference import build_features
from riskstrat.features.words import describe_value, feature
from riskstrat.data.io import write_records_tables
from riskstrat.modeling.models import RiskModel
from riskstrat.data.validate import load_records

T = pd.Timestamp("2024-01-01")


def at(days: int) -> pd.Timestamp:
    return T + pd.Timedelta(days=days)


def generic_case() -> dict[str, list[dict]]:
    """a: costed emergency admissions and a planned one; b: one costed and one blank-cost admission; c: only
    blank-cost admissions; nobody: no events. A&E records no cost at all. GP contact types written loosely."""
    def spell(pid, day, method="emergency", cost=None):
        return {"person_id": pid, "admission_date": at(day), "discharge_date": at(day + 2), "admission_method": method,
                "cost": cost}

    def gp(pid, day, kind):
        return {"person_id": pid, "contact_date": at(day), "contact_type": kind, "cost": 30.0}

    return {
        "persons": [{"person_id": p, "birth_date": "1950-06-15"} for p in ("a", "b", "c", "nobody")],
        "inpatient_spells": [spell("a", -10, cost=100.0), spell("a", -40, cost=200.0), spell("a", -400, cost=50.0),
                             spell("a", -200, "elective", cost=1000.0), spell("a", 0, cost=9.0),  # on T: the future
                             spell("b", -20, cost=300.0), spell("b", -25), spell("c", -5), spell("c", -300)],
        "ae_attendances": [{"person_id": "a", "arrival_date": at(-3)}, {"person_id": "a", "arrival_date": at(-100)},
                           {"person_id": "b", "arrival_date": at(-700)}],
        "gp_contacts": [gp("a", -1, "Face to face"), gp("a", -2, "face-to-face"), gp("b", -3, "Telephone"),
                        gp("b", -50, "Telephone"), gp("c", -60, "home visit"), gp("c", -800, "Telephone"),
                        gp("a", 10, "Telephone")],  # after T: the future
        "outpatient_appointments": [{"person_id": "a", "appointment_date": at(-15), "attended": True, "cost": 120.0},
                                    {"person_id": "b", "appointment_date": at(-15), "attended": False}],
        "prescriptions": [{"person_id": "a", "issue_date": at(-5), "bnf_chapter": "02", "cost": 5.0},
                          {"person_id": "a", "issue_date": at(-6), "bnf_chapter": "14", "cost": 12.0},
                          {"person_id": "a", "issue_date": at(-7), "bnf_chapter": "14", "cost": 12.0},
                          {"person_id": "b", "issue_date": at(-8), "bnf_chapter": "04", "cost": 3.0}],
        "social_care": [{"person_id": "c", "service_type": "home_care", "start_date": at(-30), "weekly_cost": 70.0}],
    }


@pytest.fixture
def folder(tmp_path, make_table):
    return write_records_tables({name: make_table(name, rows) for name, rows in generic_case().items()},
                                tmp_path / "d")


def config(**kw) -> GenericFeaturesConfig:
    return GenericFeaturesConfig(**{"windows": [30, 365], "min_share": 0.0, "min_people": 1, **kw})


def test_groups_come_from_the_data_and_names_say_table_group_and_measure(folder):
    spec = build_spec(config(), PandasEngine(load_records(folder)))
    groups = spec.generic["groups"]
    # Values written alike are one group; "unknown" is never one; BNF chapters get their prefix.
    assert groups["gp_contacts"]["values"] == {"telephone": ["Telephone"], "face_to_face": ["Face to face", "face-to-face"],
                                               "home_visit": ["home visit"]}
    assert set(groups["prescriptions"]["values"]) == {"bnf02", "bnf04", "bnf14"}
    assert groups["outpatient_appointments"]["values"] == {"attended": [True], "missed": [False]}
    names = set(spec.features) - set(CLINICAL.features)
    assert {"inpatient_spells__emergency__count_30d", "gp_contacts__face_to_face__days_since",
            "ae_attendances__trend_30d_365d", "inpatient_spells__cost_365d"} <= names
    assert not any("90d" in n or "730d" in n for n in names)  # the configured windows only
    assert "social_care__cost_30d" not in names and "ltc_register__count_30d" not in names
    assert all(parse_name(n) is not None and n.replace("_", "a").isalnum() for n in names)  # MLflow-safe


def test_group_values_keep_the_most_frequent_above_the_minimum_share():
    counts = {"a": 50, "b": 30, "c": 15, "d": 4, "unknown": 100, None: 7}
    assert list(group_values(counts, max_values=2, min_share=0.0)) == ["a", "b"]
    assert list(group_values(counts, max_values=9, min_share=0.05)) == ["a", "b", "c"]  # d: 4 of 199 rows


def test_a_value_recorded_for_few_people_is_never_a_group():
    # "Dr Jane Smith's review": 300 rows, all one person's. Stored with the model, it would name her.
    counts = {"Telephone": (400, 120), "Dr Jane Smith's review": (300, 1), "Home visit": (60, 12),
              "Face to face": (5, 5), "face-to-face": (6, 6)}
    assert list(group_values(counts, max_values=8, min_share=0.0, min_people=10)) == ["telephone", "home_visit"]
    # Spellings of one value are one group: its people are at least its largest spelling's.
    assert "face_to_face" in group_values(counts, max_values=8, min_share=0.0, min_people=6)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_sub_types_are_read_from_rows_before_the_test_date_with_their_people(folder, engine):
    made = PandasEngine(load_records(folder)) if engine == "pandas" else DuckDBEngine(folder)
    every = made.value_counts("gp_contacts", "contact_type")
    before = made.value_counts("gp_contacts", "contact_type", until=T)
    rows = generic_case()["gp_contacts"]
    by_hand = {}
    for r in rows:
        if r.get("contact_type") is not None and pd.Timestamp(r["contact_date"]) < pd.Timestamp(T):
            n, people = by_hand.get(r["contact_type"], (0, set()))
            by_hand[r["contact_type"]] = (n + 1, people | {r["person_id"]})
    assert before == {k: (n, len(p)) for k, (n, p) in by_hand.items()}
    assert sum(n for n, _ in every.values()) > sum(n for n, _ in before.values())  # the case has rows after T


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.slow)])  # Spark: ~1 min here
def test_engines_equal_the_reference_and_costs_are_missing_not_zero(folder, engine, request):
    if engine == "spark":
        from _spark import require_spark

        require_spark()
        from riskstrat.features.spark import SparkEngine

        session = request.getfixturevalue("spark")  # a local session: a few seconds
        made = SparkEngine(folder, spark=session)
    else:
        made = DuckDBEngine(folder)
    reference_records = load_records(folder)
    spec = build_spec(config(), PandasEngine(reference_records))
    assert build_spec(config(), made) == spec  # the engine reads the same groups
    reference = build_features(reference_records, T, spec=spec)
    got = made.features(T, spec=spec)
    pd.testing.assert_frame_equal(got, reference, check_exact=False, rtol=1e-12, atol=1e-9)
    if engine == "spark":  # scoring in place (mapInPandas per batch) builds the same spec
        from riskstrat.features.spark import _to_pandas
        from riskstrat.scoring.spark import SparkMonthFeatures

        month = SparkMonthFeatures(made, T, spec=spec)
        in_place = _to_pandas(month.features()).set_index("person_id").loc[reference.index]
        month.release()
        pd.testing.assert_frame_equal(in_place, reference[list(in_place.columns)], check_exact=False, rtol=1e-12,
                                      atol=1e-9, check_names=False)
    f = got
    assert f.loc["a", "inpatient_spells__emergency__count_30d"] == 1 and f.loc["a", "inpatient_spells__count_365d"] == 3
    assert f.loc["a", "inpatient_spells__emergency__days_since"] == 10
    assert f.loc["nobody", "inpatient_spells__days_since"] == 731  # none: at least 731 (the longest window is 365)
    # Trend: 1 in the last 30 days against 1 (emergency) or 2 (all) in days 31-365, scaled by 30/335.
    assert f.loc["a", "inpatient_spells__emergency__trend_30d_365d"] == pytest.approx(1 - 1 * 30 / 335, abs=1e-6)
    assert f.loc["a", "inpatient_spells__trend_30d_365d"] == pytest.approx(1 - 2 * 30 / 335, abs=1e-6)
    # Costs: recorded ones summed; a person whose rows all lack one: missing; no rows: 0; a table with none: missing.
    assert f.loc["a", "inpatient_spells__cost_365d"] == 1300.0
    assert f.loc["b", "inpatient_spells__cost_30d"] == 300.0  # one blank, one costed
    assert np.isnan(f.loc["c", "inpatient_spells__cost_30d"]) and np.isnan(f.loc["c", "inpatient_spells__cost_365d"])
    assert f.loc["nobody", "inpatient_spells__cost_365d"] == 0.0
    assert f["ae_attendances__cost_365d"].isna().all()  # A&E records no cost in this data set
    assert f.loc["b", "outpatient_appointments__cost_30d"] != f.loc["b", "outpatient_appointments__cost_30d"]  # NaN
    assert f.loc["a", "gp_contacts__face_to_face__count_30d"] == 2
    # Vaccines (BNF 14) are not prescription items: counted apart.
    assert f.loc["a", "rx_items_3m"] == 1 and f.loc["a", "rx_chapters_12m"] == 1 and f.loc["a", "vaccinations_12m"] == 2
    assert f.loc["a", "prescriptions__bnf14__count_30d"] == 2


def test_generic_off_gives_the_clinical_features_alone(folder):
    engine = PandasEngine(load_records(folder))
    assert build_spec(config(enabled=False), engine) is CLINICAL
    only_gp = build_spec(config(tables=["gp_contacts"], groups=False), engine)
    assert {n for n in only_gp.features if "__" in n} == {"gp_contacts__count_30d", "gp_contacts__count_365d",
                                                           "gp_contacts__days_since", "gp_contacts__trend_30d_365d",
                                                           "gp_contacts__cost_30d", "gp_contacts__cost_365d"}
    assert list(build_features(engine.records, T).columns[:3]) == ["age", "sex_female", "deprivation_decile"]


def test_the_spec_round_trips_as_json_and_refuses_what_it_cannot_build(folder):
    spec = build_spec(config(), PandasEngine(load_records(folder)))
    stored = json.loads(json.dumps(spec.to_dict()))
    again = FeatureSpec.from_dict(stored)
    assert again == spec and again.hash() == spec.hash() == stored["hash"] and again.generic == spec.generic
    assert CLINICAL.hash() == spec_hash() and FeatureSpec.from_dict(CLINICAL.to_dict()) == CLINICAL
    with pytest.raises(FeatureSpecError, match="derive version 1"):
        FeatureSpec.from_dict({**stored, "derive_version": 1})
    tampered = json.loads(json.dumps(stored))
    tampered["aggregates"][-1]["window"] = [1, 9]
    with pytest.raises(FeatureSpecError, match="does not match its own hash"):
        FeatureSpec.from_dict(tampered)


def test_union_of_specs_and_refusal_of_one_name_defined_two_ways():
    one = generic_spec({"windows": [90, 730]}, {"gp_contacts": {"column": "contact_type", "values": {"phone": ["phone"]}}},
                       tables=["gp_contacts"])
    two = generic_spec({"windows": [90, 730]}, {}, tables=["gp_contacts", "ae_attendances"])
    both = FeatureSpec.union([one, two, CLINICAL])
    assert set(both.features) == set(one.features) | set(two.features)
    assert len({a.name for a in both.aggregates}) == len(both.aggregates)
    other = generic_spec({"windows": [90, 365]}, {}, tables=["gp_contacts"])  # days_since looks back 365 days
    with pytest.raises(FeatureSpecError, match="gp_contacts__days_since differently"):
        FeatureSpec.union([one, other])
    spelled = generic_spec({"windows": [90, 730]}, {"gp_contacts": {"column": "contact_type",
                                                                    "values": {"phone": ["Phone"]}}},
                           tables=["gp_contacts"])
    with pytest.raises(FeatureSpecError, match="gp_contacts__phone__count_90d differently"):
        FeatureSpec.union([one, spelled])


def _loaded(metadata: dict, version="3"):
    from riskstrat.registry import tracking

    model = RiskModel("lightgbm", "emergency_admission", ["age"], estimator=None, metadata=metadata)
    return tracking.LoadedModel(model, "m", version, "run", "champion")


def test_scoring_builds_the_stored_spec_and_old_models_the_clinical_one(folder):
    from riskstrat.pipelines.score import month_features
    from riskstrat.scoring.checks import FeatureSpecMismatchError, check_feature_spec, models_spec

    spec = build_spec(config(), PandasEngine(load_records(folder)))
    new = _loaded({"feature_spec": spec.to_dict(), "feature_spec_hash": spec.hash()})
    assert check_feature_spec(new) == spec
    said = []
    assert check_feature_spec(_loaded({"feature_spec_hash": spec_hash()}), stage=said.append) is CLINICAL
    assert check_feature_spec(_loaded({}), stage=said.append) is CLINICAL and "records no feature" in said[0]
    with pytest.raises(FeatureSpecMismatchError, match="derive version 1.*Retrain it"):
        check_feature_spec(_loaded({"feature_spec": {**spec.to_dict(), "derive_version": 1}}))
    # A clinical-only model and a generic one scored together: the union, every feature of both built.
    union = models_spec([_loaded({"feature_spec_hash": spec_hash()}), new])
    frame = month_features(DuckDBEngine(folder), T, min_age=18, max_age=120, spec=union).frame
    assert set(spec.features) <= set(frame.columns)
    narrow = generic_spec({"windows": [30, 90]}, {}, tables=["inpatient_spells"])
    with pytest.raises(FeatureSpecMismatchError, match="m version 3 and m version 4.*differently"):
        models_spec([new, _loaded({"feature_spec": narrow.to_dict()}, version="4")])


def test_config_accepts_generic_names_and_refuses_others():
    FeaturesConfig(include=["age", "gp_contacts__count_90d", "ae_attendances__urgent_care__days_since"],
                   exclude=["prescriptions__bnf14__trend_90d_730d", "inpatient_spells__cost_365d"])
    for bad in ("gp_contacts__bogus", "social_care__cost_90d", "ltc_register__count_90d", "gp_contacts__a__cost_90d"):
        with pytest.raises(ValueError, match="unknown features"):
            FeaturesConfig(include=[bad])
    with pytest.raises(ValueError, match="windows must be distinct"):
        GenericFeaturesConfig(windows=[90, 90])
    with pytest.raises(ValueError, match="unknown tables"):
        GenericFeaturesConfig(tables=["ltc_register"])


def test_generic_features_speak_in_words():
    assert describe_value("ae_attendances__urgent_care__count_90d", 4) == "4 urgent-care visits in the last 90 days"
    assert describe_value("ae_attendances__days_since", 12) == "last A&E visit 12 days ago"
    assert describe_value("ae_attendances__days_since", 731) is None
    assert describe_value("gp_contacts__face_to_face__count_365d", 1) == \
        "1 face to face GP contact in the last 12 months"
    assert describe_value("prescriptions__bnf02__count_90d", 3) == \
        "3 cardiovascular prescription items in the last 90 days"
    assert describe_value("inpatient_spells__cost_365d", 1234.0) == "hospital admissions costing £1,234 in the last 12 months"
    assert describe_value("inpatient_spells__cost_365d", np.nan) is None
    assert describe_value("gp_contacts__trend_90d_730d", 2.5).startswith("GP contacts rising: 2.5 more")
    assert describe_value("gp_contacts__trend_90d_730d", -1.0) is None
    assert feature("outpatient_appointments__missed__count_90d").source == "outpatient_appointments"


def test_a_sub_type_column_counts_only_when_the_schema_has_it(monkeypatch):
    from riskstrat.features import generic
    from riskstrat.data.schema import TABLES, Table

    # A&E groups by department type, a column of the schema; a schema without it gives A&E no groups.
    assert generic.group_column("ae_attendances").column == "department_type"
    assert generic.group_column("gp_contacts").column == "contact_type"
    ae = TABLES["ae_attendances"]
    without_type = Table(ae.name, ae.description, tuple(c for c in ae.columns if c.name != "department_type"),
                         event_date=ae.event_date)
    monkeypatch.setitem(generic.TABLES, "ae_attendances", without_type)
    assert generic.group_column("ae_attendances") is None
    counts = {"emergency_department": 60, "urgent_care": 35, "unknown": 5}
    assert list(group_values(counts, max_values=8, min_share=0.01)) == ["emergency_department", "urgent_care"]


def test_riskstrat_features_lists_and_explains_the_generic_covariates():
    from typer.testing import CliRunner

    from riskstrat.cli import app

    result = CliRunner().invoke(app, ["features"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in ("vaccinations_12m", "ae_attendances__count_90d", "ae_attendances__days_since",
                 "gp_contacts__trend_90d_730d", "inpatient_spells__cost_730d", "gp_contacts__<contact_type>__count_90d"):
        assert name in result.output
    # The description wraps within its cell: read it without the table's borders and line breaks.
    flat = " ".join(result.output.translate({ord(c): " " for c in "│┃"}).split())
    assert "missing where the events carry no cost" in flat
    assert "social_care__cost_90d" not in result.output  # social care records weekly costs, not one per event


def test_riskstrat_features_shows_every_name_whole():
    # A name cut short ("inpatient_spells__<admission_method>__count…") cannot be told from its
    # neighbours (count_365d, count_730d): every feature's full name is in the listing.
    from typer.testing import CliRunner

    from riskstrat.cli import app
    from riskstrat.features.words import feature_table

    result = CliRunner().invoke(app, ["features"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    cut = [n for n in feature_table(generic=True).name if n not in result.output]
    assert not cut, f"{len(cut)} feature names cut short, e.g. {cut[:3]}"


def test_generic_covariates_speak_through_the_clinical_reason_about_the_same_events():
    from riskstrat.features.reasons import top_reasons

    # Ada's risk comes from her prescriptions in several windows and from her emergency admissions
    # (clinical and generic): each history is said once, in the clinical words. Her urgent-care visits
    # are not A&E department visits: they speak alone, in their own words.
    ids = pd.Index(["ada"], name="person_id")
    shap = pd.DataFrame({"prescriptions__count_730d": [0.30], "prescriptions__bnf02__count_365d": [0.10],
                         "rx_items_12m": [0.05], "inpatient_spells__emergency__count_365d": [0.20],
                         "emergency_admissions_0_3m": [0.05], "ae_attendances__urgent_care__count_90d": [0.12],
                         "gp_contacts__count_730d": [0.01]}, index=ids)
    values = pd.DataFrame({"prescriptions__count_730d": [298.0], "prescriptions__bnf02__count_365d": [40.0],
                           "rx_items_3m": [33.0], "rx_items_12m": [130.0], "rx_chapters_12m": [10.0],
                           "inpatient_spells__emergency__count_365d": [3.0], "emergency_admissions_0_3m": [1.0],
                           "emergency_admissions_3_12m": [2.0], "emergency_admissions_12_24m": [0.0],
                           "days_since_emergency_admission": [23.0], "emergency_bed_days_12m": [9.0],
                           "ae_attendances__urgent_care__count_90d": [4.0], "gp_contacts__count_730d": [20.0],
                           "gp_contacts_0_3m": [2.0], "gp_contacts_3_12m": [5.0]}, index=ids)
    from riskstrat.features.words import ReasonThresholds

    reasons = top_reasons(shap, values, n=3, thresholds=ReasonThresholds({"rx_items_3m": {"all": 20.0}}))
    said = [reasons.loc["ada", f"reason_{i}"] for i in (1, 2, 3)]
    assert said == ["many medicines: about 11 prescription items a month, from 10 BNF chapters",
                    "3 emergency admissions in the last 12 months, the last 23 days ago (9 days in hospital)",
                    "4 urgent-care visits in the last 90 days"]
    assert not any("in the last 2 years" in s for s in said)


def test_no_event_in_a_short_longest_window_is_never_said_as_a_reason(folder):
    """Windows shorter than 2 years: a person with no event in them must not read "last ... 1 year ago"."""
    records = load_records(folder)
    spec = build_spec(config(), PandasEngine(records))  # windows 30 and 365 days
    f = build_features(records, T, spec=spec)
    for name in ("inpatient_spells__days_since", "gp_contacts__days_since", "ae_attendances__days_since"):
        assert describe_value(name, f.loc["nobody", name]) is None, name
    # An event inside the window still reads as it happened.
    assert describe_value("inpatient_spells__days_since", f.loc["a", "inpatient_spells__days_since"]) == \
        "last hospital admission 10 days ago"
    assert f.loc["c", "ae_attendances__days_since"] == f.loc["nobody", "ae_attendances__days_since"]
