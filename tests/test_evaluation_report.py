"""The reviewer's parts of the evaluation report and card: the verdict with its group, the design's
numbers (Riley et al.'s sample size, participant flow, Table 1), the conclusions, the TRIPOD+AI
checklist, and the page's accessibility (scope on every header, viewport meta)."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from riskstrat.evaluation import gate as gates
from riskstrat.evaluation import subgroup_attributes
from riskstrat.evaluation._evaluate import evaluate_scores
from riskstrat.modeling.design import characteristics, max_r2_cs, minimum_sample_size, participant_flow
from riskstrat.report import _sections as sections
from riskstrat.report import render_card, render_report, with_interval


# ----------------------------------------------------------------------------- Riley et al. (2020)

def test_the_calibration_band_has_the_resamples_asked_for_and_none_at_zero():
    from riskstrat.evaluation import metrics
    from riskstrat.evaluation.plots import calibration_band, smoothed_calibration_figure

    rng = np.random.default_rng(2)
    p = rng.uniform(0.01, 0.6, size=1200)
    y = rng.binomial(1, p)
    curve, low, high = calibration_band(y, p, n_boot=0)
    pd.testing.assert_frame_equal(curve, metrics.smoothed_calibration(y, p))
    assert np.isnan(low).all() and np.isnan(high).all()  # evaluation.calibration_band_resamples: 0, the curve alone
    _, low, high = calibration_band(y, p, n_boot=8)
    inside = np.isfinite(low)
    assert inside.mean() > 0.9 and (low[inside] <= high[inside]).all() and (high[inside] > low[inside]).mean() > 0.9
    observed = curve["observed"].to_numpy()[inside]
    assert ((low[inside] <= observed) & (observed <= high[inside])).mean() > 0.8
    labels = [smoothed_calibration_figure(y, p, n_boot=n).axes[0].get_legend_handles_labels()[1] for n in (0, 3)]
    assert labels == [["smoothed (loess)", "deciles", "perfect"], ["95% band (bootstrap)", "smoothed (loess)", "deciles",
                                                                   "perfect"]]


def test_minimum_sample_size_matches_pmsampsize():
    # pmsampsize's documented binary example: R2cs 0.288, 24 parameters, prevalence 0.174 -> 623, 662, 221; 662.
    s = minimum_sample_size(0.174, 24, r2_cs=0.288)
    assert s["criteria"] == {"shrinkage": 623, "optimism": 662, "intercept": 221}
    assert s["n"] == 662 and s["events"] == 116 and s["max_r2_cs"] == pytest.approx(0.6032, abs=1e-4)
    assert s["events_per_parameter"] == pytest.approx(4.80, abs=0.01)


def test_minimum_sample_size_by_hand_with_the_assumed_r2():
    p, params = 0.1, 10
    max_r2 = 1 - np.exp(2 * (p * np.log(p) + (1 - p) * np.log(1 - p)))
    r2 = 0.15 * max_r2
    shrinkage = int(np.ceil(params / ((0.9 - 1) * np.log(1 - r2 / 0.9))))
    s = minimum_sample_size(p, params)
    assert max_r2_cs(p) == pytest.approx(max_r2) and s["r2_cs"] == pytest.approx(r2) and s["r2_cs_assumed"]
    assert s["criteria"]["shrinkage"] == shrinkage and s["criteria"]["intercept"] == 139  # 1.96^2/0.05^2*0.09
    with pytest.raises(ValueError, match="prevalence"):
        minimum_sample_size(0.0, 10)


# ----------------------------------------------------------------------------- flow and Table 1

def _persons():
    ts = pd.Timestamp
    return pd.DataFrame({
        "person_id": ["a", "b", "c", "d", "e", "f"],
        "birth_date": [ts("1950-01-01"), ts("1960-01-01"), ts("2015-01-01"), ts("1940-01-01"), ts("1970-01-01"),
                       ts("1980-01-01")],
        "death_date": [pd.NaT, pd.NaT, pd.NaT, ts("2019-06-01"), pd.NaT, ts("2020-03-01")],
        "registration_start": [ts("2000-01-01")] * 6,
        "registration_end": [pd.NaT, ts("2020-06-01"), pd.NaT, pd.NaT, pd.NaT, pd.NaT],
    })


def test_participant_flow_counts_exclusions_and_missing_labels_by_reason():
    eligible = pd.Index(["a", "b", "e", "f"])  # c is a child, d died before the date
    labels = pd.Series([1.0, np.nan, 0.0, np.nan], index=eligible)
    flow = participant_flow(_persons(), "2020-01-01", eligible, labels, horizon_days=365)
    assert flow["in_extract"] == 6 and flow["eligible"] == 4
    assert flow["excluded"]["died"] == 1 and flow["excluded"]["younger_than_min_age"] == 1
    assert flow["no_label"] == {"censored": 1, "died_without_event": 1, "not_at_risk": 0}
    assert flow["labelled"] == 2 and flow["events"] == 1


def test_characteristics_are_counts_of_each_group():
    frame = pd.DataFrame({"age": [20, 40, 60, 80], "sex": ["female", "male", "female", None],
                          "deprivation_decile": [1, 2, 10, None], "ethnicity_group": ["white", "asian", "white", "white"],
                          "emergency_admissions_0_3m": [0, 1, 0, 0], "emergency_admissions_3_12m": [0, 0, 2, 0]})
    c = characteristics(frame, [0, 1, 1, 0])
    assert c["n"] == 4 and c["age"]["mean"] == 50 and c["age"]["median"] == 50
    assert c["counts"]["sex"] == {"female": 2, "male": 1, "unknown": 1}
    assert c["counts"]["deprivation quintile"] == {"1 (most deprived)": 2, "5 (least deprived)": 1, "unknown": 1}
    assert c["counts"]["prior use"] == {"an emergency admission in the past year": 2}
    assert c["counts"]["outcome"] == {"with the outcome": 2}


# ----------------------------------------------------------------------------- a small evaluation, rendered

@pytest.fixture(scope="module")
def small_evaluation():
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame({"age": rng.integers(18, 95, n).astype(float),
                          "sex": rng.choice(["female", "male"], n), "deprivation_decile": rng.integers(1, 11, n),
                          "ethnicity_group": rng.choice(["white", "asian", "black"], n, p=[0.8, 0.15, 0.05]),
                          "practice_id": rng.choice(["P1", "P2"], n), "emergency_admissions_0_3m": rng.poisson(0.1, n),
                          "emergency_admissions_3_12m": rng.poisson(0.2, n)})
    risk = 1 / (1 + np.exp(-(-4 + 0.04 * frame["age"] + 0.8 * frame["emergency_admissions_3_12m"])))
    y = (rng.random(n) < risk).astype(int)
    scores = {"candidate": np.clip(risk.to_numpy() * 1.1, 0.001, 0.999),
              "logistic": np.clip(risk.to_numpy() + rng.normal(0, 0.01, n), 0.001, 0.999),
              "prior_use": (frame["emergency_admissions_0_3m"] * 1000 + frame["emergency_admissions_3_12m"]).to_numpy(float)}
    ev = evaluate_scores(y, scores, subgroup_attributes(frame), n_boot=20, min_group_events=20)
    context = {"model_name": "north-admissions", "model_version": "3", "model_run_id": "run0", "against": None,
               "as_of": "2025-11-01", "extract_end": "2026-10-31", "outcome": {"name": "x", "horizon_days": 365},
               "outcome_words": "an emergency admission", "horizon_days": 365, "data_dir": "/data/x",
               "data_sha256": "0" * 64, "n_unlabelled": 0, "sources": ["inpatient_spells"],
               "features": ["age", "gp_contacts_3_12m", "custom_thing"], "created": "2026-12-01",
               "feature_spec_hash": "abc", "min_group_events": 20, "n_boot": 20, "baselines": {},
               "training_overlap": {}, "unseen": None,
               "registry": {"version": "3", "aliases": ["champion"], "degenerate": None, "refit": None,
                            "model_aliases": {"champion": "3"},
                            "override": {"reason": "pilot in two practices", "user": "alice",
                                         "time": "2026-12-01T10:00:00+00:00", "failed": "subgroup AUROC floor"}},
               "flow": participant_flow(_persons(), "2020-01-01", pd.Index(["a", "e"]),
                                        pd.Series([1.0, 0.0], index=["a", "e"]), horizon_days=365),
               "characteristics": characteristics(frame, y),
               "design": {"algorithm": "LightGBM", "calibration": "Platt scaling", "calibration_method": "sigmoid",
                          "training": {"index_dates": ["2023-11-01", "2024-11-01"], "horizon_days": 365,
                                       "test_date": "2025-11-01", "split": {"mode": "temporal_only"}},
                          "counts": {"train_rows": 6000, "train_people": 3000, "train_positive": 600},
                          "candidate_predictors": 3, "events_per_predictor": 200.0,
                          "sample_size": minimum_sample_size(0.1, 3), "parameters": {"num_leaves": 7},
                          "search": {"enabled": False}, "characteristics": {"train": characteristics(frame, y)}}}
    floor = float(ev.subgroups.reliable()["auroc"].max()) + 0.01  # every group fails: a floor above them all
    criteria = gates.check_gate(ev.metrics, gates.Gate(min_subgroup_auroc=min(floor, 1.0), min_events=10))
    return ev, context, criteria


def _page(small_evaluation) -> str:
    ev, context, criteria = small_evaluation
    names = ("roc", "pr", "calibration", "calibration_deciles", "top_k_ppv", "decision_curve")
    return render_report(ev, context, figures_png={k: b"png" for k in names}, criteria=criteria)


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.th, self.ids, self.meta, self.hrefs, self.rows = [], set(), [], [], {}
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "th":
            self.th.append(a)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "meta":
            self.meta.append(a)
        if tag == "a" and a.get("href", "").startswith("#"):
            self.hrefs.append((self._row, a["href"][1:]))
        if tag == "tr" and a.get("id", "").startswith("tripod-"):
            self._row = a["id"].removeprefix("tripod-")
            self.rows[self._row] = ""

    def handle_data(self, data):
        if self._row is not None:
            self.rows[self._row] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None


def test_report_opens_with_the_verdict_naming_each_failed_group_and_the_forced_promotion(small_evaluation):
    page = _page(small_evaluation)
    first = html.unescape(page[page.index('<div id="verdict"'):page.index("</div>", page.index('<div id="verdict"'))])
    _, _, criteria = small_evaluation
    failed = [c for c in criteria if not c.passed]
    assert "Gate: FAIL" in first and f"({len(failed)} of {len(criteria)} criteria failed)" in first
    # Each failure in the gate's own words, which name the group and its numbers (no second wording).
    assert all(f"{c.name}: {c.detail}" in first for c in failed)
    assert re.search(r"subgroup AUROC floor: age band \d+-\d+: AUROC 0\.\d{3} \(95% CI 0\.\d{3} to 0\.\d{3}\)", first)
    assert "below the floor" in first
    assert "promoted with --force" in first and "alice" in first and "pilot in two practices" in first
    assert "Version 3 is champion" in first
    # The model's name, not "candidate"; the prior use rule, not "prior_use"; no machine path in the first paragraph.
    summary = page[page.index('<p id="summary">'):page.index("</p>", page.index('<p id="summary">'))]
    assert "north-admissions" in summary and "/data/x" not in summary and "candidate" not in summary
    assert ">prior_use<" not in page and "the prior use rule" in page


def test_report_headers_have_scope_and_the_page_a_viewport(small_evaluation):
    parsed = _Parser()
    parsed.feed(_page(small_evaluation))
    assert parsed.th and all(a.get("scope") in ("col", "row") for a in parsed.th)
    assert any(m.get("name") == "viewport" and "width=device-width" in m.get("content", "") for m in parsed.meta)


def test_every_tripod_item_is_answered_or_marked_for_a_person(small_evaluation):
    parsed = _Parser()
    parsed.feed(_page(small_evaluation))
    items = sections.tripod_items()
    assert len(items) == len({i["id"] for i in items}) >= 50  # TRIPOD+AI: 27 items, 52 with their parts
    for must in ("17", "18a", "18b", "19"):  # ethics, funding, conflicts, patient and public involvement
        assert "to be completed by a person" in parsed.rows[must]
    for item in items:
        assert item["id"] in parsed.rows, item
        links = [target for row, target in parsed.hrefs if row == item["id"]]
        assert links or "to be completed by a person" in parsed.rows[item["id"]], item
        assert all(target in parsed.ids for target in links), (item, links)


def test_conclusions_say_no_better_when_the_interval_spans_zero(small_evaluation):
    ev, context, _ = small_evaluation
    fake = SimpleNamespace(**{**ev.__dict__, "comparison": pd.DataFrame(
        [{"versus": "logistic", "auroc_difference": 0.0, "ci_low": -0.016, "ci_high": 0.016}])})
    lines = sections.conclusions(fake, context)
    assert ("north-admissions is no better than logistic regression (AUROC difference 0.000, 95% CI \u22120.016 to "
            "0.016): the simpler model would rank people as well.") in lines


def test_card_carries_the_gate_design_tiers_meanings_owner_and_monitoring(small_evaluation):
    ev, context, criteria = small_evaluation
    card = render_card(ev, context, criteria=criteria)
    assert "**Gate: FAIL**" in card and "promoted with --force" in card
    for heading in ("## Algorithm and design", "## Calibration by tier", "## Feature meanings", "## Monitoring plan",
                    "## Owner and review", "## TRIPOD+AI"):
        assert heading in card
    assert "| `gp_contacts_3_12m` | gp_contacts | GP practice contacts 3 to 12 months ago. |" in card
    assert "Review date: 2027-12-01" in card and "Recalibrate" in card and "Refit the model" in card
    # What the gate asks, with its intervals, the per-group rule and the margin; figures with their intervals.
    assert "## How the gate judges" in card and "non-inferiority margin" in card and "90% interval" in card
    assert "not be shown below the prior use rule's in that group" in card
    c = ev.headline.loc["candidate"]
    assert with_interval(c["o_e_ratio"], c["o_e_ci_low"], c["o_e_ci_high"], 2) in card


def test_headline_and_group_tables_show_intervals_in_field_words(small_evaluation):
    ev, _, _ = small_evaluation
    parsed = _Parser()
    page = _page(small_evaluation)
    parsed.feed(page)
    headline = page[page.index('<h2 id="headline">'):page.index("</table>", page.index('<h2 id="headline">'))]
    c = ev.headline.loc["candidate"]
    for heading in ("calibration slope (95% CI)", "O/E (95% CI)", "bootstrap resamples used"):
        assert f">{heading}</th>" in html.unescape(headline), heading
    assert with_interval(c["calibration_slope"], c["calibration_slope_ci_low"], c["calibration_slope_ci_high"], 2) \
        in headline and with_interval(c["o_e_ratio"], c["o_e_ci_low"], c["o_e_ci_high"], 2) in headline
    assert f">{int(c['bootstrap_resamples_used'])}</td>" in headline
    groups = page[page.index('<h2 id="subgroups">'):page.index('<h2 id="fairness">')]
    assert "AUROC minus the prior use rule&#39;s (95% CI)" in groups and "prior use rule&#39;s AUROC" in groups
    # No code names in any heading.
    heads = re.findall(r"<th[^>]*>([^<]*)</th>", page)
    assert heads and not [h for h in heads if "_" in h or "reference" in h], heads


def test_slope_conclusion_reads_the_interval_as_the_gate_does():
    gate = gates.Gate()
    narrow_enough = {"calibration_slope": 0.95, "calibration_slope_ci_low": 0.88, "calibration_slope_ci_high": 1.02}
    wide = {"calibration_slope": 0.844, "calibration_slope_ci_low": 0.753, "calibration_slope_ci_high": 0.935}
    assert "lies within 0.8\u20131.2, so it is shown" in sections.slope_conclusion(narrow_enough, gate)
    assert "too extreme" in sections.slope_conclusion(wide, gate)
    assert "does not lie within 0.8\u20131.2, so it is not shown" in sections.slope_conclusion(wide, gate)
    assert gates._range_check("s", 0.844, *gates._slope_90(lambda k: {"candidate.calibration_slope": 0.844,
                              "candidate.calibration_slope_ci_low": 0.753,
                              "candidate.calibration_slope_ci_high": 0.935}.get(k)),
                              lo=0.8, hi=1.2, what="slope").passed is False
    constant = {"calibration_slope": float("nan"), "calibration_slope_not_estimable": 1.0}
    assert "cannot be estimated (constant predicted risk)" in sections.slope_conclusion(constant, gate)
