"""Run configuration: defaults, the shipped YAML files, loud failures and dotted overrides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml

from riskstrat.modeling.config import ConfigError, TrainConfig, config_to_dict, load_config, parse_overrides

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def test_defaults_validate():
    cfg = load_config()
    assert isinstance(cfg, TrainConfig)
    assert cfg.target.name == "emergency_admission" and cfg.target.horizon_days == 365
    assert cfg.index_dates.test > max(cfg.index_dates.train)
    assert cfg.registered_model_name == "riskstrat-emergency-admission"
    assert TrainConfig.model_validate(config_to_dict(cfg)) == cfg  # the logged dict reads back


@pytest.mark.parametrize(("file", "target"), [("emergency_admission.yaml", "emergency_admission"),
                                              ("high_cost.yaml", "high_cost")])
def test_shipped_configs_are_the_defaults_for_their_target(file, target):
    # The demo runs the defaults with only target.name set, and says they are configs/*.yaml:
    # every setting a file states must be what the defaults give for its target.
    path = CONFIGS / file
    cfg = load_config(path)
    assert cfg.target.name == target
    defaults = flatten(config_to_dict(load_config(None, [f"target.name={target}"])))
    stated = flatten(config_to_dict(cfg))
    differing = {k: (stated[k], defaults[k]) for k in stated if stated[k] != defaults[k]}
    # The registered model name is written out in the file and derived from the target by default.
    assert differing == {"tracking.registered_model": (cfg.registered_model_name, None)}
    assert cfg.registered_model_name == load_config(None, [f"target.name={target}"]).registered_model_name


def test_emergency_admission_yaml_states_only_known_settings():
    raw = flatten(yaml.safe_load((CONFIGS / "emergency_admission.yaml").read_text()))
    defaults = flatten(config_to_dict(load_config()))
    assert set(raw) <= set(defaults)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("target:\n  horizon_day: 180\n", r"target\.horizon_day: Extra inputs are not permitted"),
    ("modle:\n  calibration: sigmoid\n", r"modle: Extra inputs are not permitted"),
    ("target:\n  name: readmission\n", r"target\.name: .*unknown target 'readmission'"),
    ("features:\n  include: [age, emergency_admisions_0_3m]\n", r"unknown features \['emergency_admisions_0_3m'\]"),
    ("features:\n  exclude: [not_a_feature]\n", r"unknown features \['not_a_feature'\]"),
    ("data:\n  exclude_sources: [socialcare]\n", r"data\.exclude_sources: .*unknown sources \['socialcare'\]"),
    ("index_dates:\n  train: [2024-11-01]\n  test: 2024-11-01\n", r"must come after every training date"),
    ("index_dates:\n  train: []\n", r"needs at least one date"),
    ("target:\n  horizon_days: 10\n", r"target\.horizon_days"),
    ("model:\n  calibration: platt\n", r"model\.calibration"),
])
def test_invalid_settings_fail_naming_the_setting(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bad_yaml_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "target: [unclosed\n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- target\n- death\n"))
    assert load_config(write(tmp_path, "")) == load_config()  # an empty file is the defaults


def test_dotted_overrides_are_parsed_as_yaml():
    assert parse_overrides(["model.lightgbm.learning_rate=0.05", "data.exclude_sources=[social_care, gp_contacts]",
                            "target.name=death"]) == {
        "model": {"lightgbm": {"learning_rate": 0.05}},
        "data": {"exclude_sources": ["social_care", "gp_contacts"]},
        "target": {"name": "death"}}
    cfg = load_config(None, ["model.lightgbm.learning_rate=0.05", "index_dates.train=[2023-11-01, 2024-02-01]",
                             "index_dates.test=2025-02-01", "cohort.min_age=65"])
    assert cfg.model.lightgbm.learning_rate == 0.05 and isinstance(cfg.model.lightgbm.learning_rate, float)
    assert cfg.index_dates.train == [dt.date(2023, 11, 1), dt.date(2024, 2, 1)]
    assert cfg.index_dates.test == dt.date(2025, 2, 1)
    assert cfg.cohort.min_age == 65


def test_overrides_win_over_the_file_and_keep_its_other_settings():
    cfg = load_config(CONFIGS / "high_cost.yaml", ["target.top_fraction=0.1", "model.lightgbm.num_leaves=15"])
    assert (cfg.target.name, cfg.target.top_fraction) == ("high_cost", 0.1)
    assert cfg.model.lightgbm.num_leaves == 15
    assert cfg.model.lightgbm.learning_rate is None  # untouched sibling from the file ('auto')


@pytest.mark.parametrize(("override", "message"), [
    ("model.lightgbm.learning_rat=0.05", r"model\.lightgbm\.learning_rat: Extra inputs are not permitted"),
    ("model.lightgbm.learning_rate=fast", r"model\.lightgbm\.learning_rate"),
    ("target.nme=death", r"target\.nme"),
    ("learning_rate", r"must look like key\.subkey=value"),
])
def test_override_mistakes_fail_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_conflicting_overrides_fail():
    with pytest.raises(ConfigError, match="conflicts with another override"):
        parse_overrides(["model=1", "model.calibration=sigmoid"])


def test_index_dates_auto_fit_the_extract():
    cfg = load_config(None, ["index_dates=auto", "target.horizon_days=180"])
    assert cfg.index_dates == "auto"
    fitted = cfg.with_index_dates_for("2026-10-31")
    # The latest first-of-month test date whose 180-day horizon the extract covers, and training
    # dates whose horizons end by it; the rest of the config is unchanged.
    assert str(fitted.index_dates.test) == "2026-05-01"
    assert [str(d) for d in fitted.index_dates.train] == ["2024-11-01", "2025-02-01", "2025-05-01", "2025-08-01",
                                                          "2025-11-01"]
    assert fitted.target == cfg.target
    assert load_config(None).with_index_dates_for("2026-10-31") == load_config(None)  # explicit dates are kept


@pytest.mark.parametrize("extract_end", ["2026-10-31", "2024-03-15", "2025-02-28", "2024-02-29"])
@pytest.mark.parametrize("horizon", [30, 180, 365, 366, 730, 1095])
def test_auto_index_dates_are_valid_for_any_horizon(extract_end, horizon):
    # Every training label window ends by the test date, whose own window the extract covers.
    cfg = load_config(None, ["index_dates=auto", f"target.horizon_days={horizon}"]).with_index_dates_for(extract_end)
    days = pd.Timedelta(days=horizon)
    assert pd.Timestamp(cfg.index_dates.test) + days <= pd.Timestamp(extract_end) + pd.Timedelta(days=1)
    assert all(pd.Timestamp(d) + days <= pd.Timestamp(cfg.index_dates.test) for d in cfg.index_dates.train)
