"""The promotion gate on hand-made evaluation metrics: it refuses a worse model and accepts a better one."""

from __future__ import annotations

import pytest

from riskstrat.evaluation.gate import Gate, GateError, check_gate, default_gate_yaml, load_gate

GOOD = {"n_events": 400.0, "candidate.calibration_slope": 1.02, "subgroup.min_auroc": 0.71,
        "minus_champion.auroc": 0.012, "minus_champion.auroc_ci_low": 0.004, "minus_champion.auroc_ci_high": 0.020}


def verdict(metrics, gate=Gate(), **kw):
    return {c.name: c.passed for c in check_gate(metrics, gate, **kw)}


def test_accepts_a_better_model():
    assert all(verdict(GOOD, champion_version="1", compared_version="1").values())


def test_refuses_a_worse_model():
    worse = {**GOOD, "minus_champion.auroc": -0.02, "minus_champion.auroc_ci_low": -0.03,
             "minus_champion.auroc_ci_high": -0.01}
    assert verdict(worse, champion_version="1", compared_version="1") == {
        "minimum events": True, "not worse than the champion": False, "calibration slope": True,
        "subgroup AUROC floor": True}
    # ... unless a drop of that size is allowed.
    assert verdict(worse, Gate(max_auroc_drop=0.02), champion_version="1", compared_version="1")[
        "not worse than the champion"]


def test_not_worse_within_the_interval_passes():
    tied = {**GOOD, "minus_champion.auroc": -0.003, "minus_champion.auroc_ci_low": -0.011,
            "minus_champion.auroc_ci_high": 0.004}
    assert verdict(tied, champion_version="1", compared_version="1")["not worse than the champion"]


@pytest.mark.parametrize(("change", "failed"), [
    ({"n_events": 40.0}, "minimum events"),
    ({"candidate.calibration_slope": 0.7}, "calibration slope"),
    ({"candidate.calibration_slope": 1.3}, "calibration slope"),
    ({"subgroup.min_auroc": 0.6}, "subgroup AUROC floor"),
    ({"subgroup.min_auroc": float("nan")}, "subgroup AUROC floor"),
])
def test_each_criterion_fails_alone(change, failed):
    got = verdict({**GOOD, **change}, champion_version="1", compared_version="1")
    assert [name for name, ok in got.items() if not ok] == [failed]


def test_comparison_must_be_with_the_current_champion():
    criteria = check_gate(GOOD, Gate(), champion_version="3", compared_version="1")
    failed = [c for c in criteria if not c.passed]
    assert [c.name for c in failed] == ["not worse than the champion"]
    assert "not compared with the current version 3" in failed[0].detail
    # No champion yet: nothing to compare with.
    assert verdict({"n_events": 400.0, "candidate.calibration_slope": 1.0, "subgroup.min_auroc": 0.7},
                   champion_version=None)["not worse than the champion"]


def test_gate_file_round_trip_and_typos(tmp_path):
    path = tmp_path / "gate.yaml"
    assert load_gate(path) == Gate()  # missing file: the defaults
    path.write_text(default_gate_yaml())
    assert load_gate(path) == Gate()
    path.write_text("min_event: 10\n")
    with pytest.raises(GateError, match="min_event"):
        load_gate(path)
    path.write_text("calibration_slope_min: 1.3\n")
    with pytest.raises(GateError, match="calibration_slope_min must be below"):
        load_gate(path)


def test_the_evaluation_must_come_after_the_training_labels():
    from riskstrat.evaluation.gate import check_timing

    before = check_timing("2024-08-01", "2025-11-01")
    assert not before.passed and "2024-08-01" in before.detail and "2025-11-01" in before.detail
    assert check_timing("2025-11-01", "2025-11-01").passed  # labels count [T, T + horizon): no shared day
    unknown = check_timing("2025-11-01", None)
    assert not unknown.passed and "evaluate it again" in unknown.detail


def test_gate_refusals_are_riskstrat_errors():
    from riskstrat.errors import RiskstratError
    from riskstrat.evaluation.gate import require_reason

    assert issubclass(GateError, RiskstratError)
    with pytest.raises(RiskstratError, match="--force needs --reason"):
        require_reason(force=True, reason="  ")
    require_reason(force=True, reason="pilot")
    require_reason(force=False, reason=None)
