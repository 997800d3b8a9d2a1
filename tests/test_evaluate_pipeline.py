"""`riskstrat evaluate` and the gated `promote` end to end: a small synthetic population, two model
versions in a temporary SQLite registry, the report, the card and the MLflow link.

3,000 people over 4 years from 2021-11-01 (the extract ends 2025-10-31); models trained small on
2023 dates and tested at 2024-11-01, evaluated at 2024-11-01 (the latest date with a full horizon).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from riskstrat.registry import tracking
from riskstrat.modeling.config import load_config
from riskstrat.pipelines.evaluate import TooFewEventsError, run_evaluation
from riskstrat.outcomes.labels import CensoredIndexDateError
from riskstrat.pipelines.train import run_training
from riskstrat.data.synth import write_population

NAME = "eval-emergency"
AS_OF = "2024-11-01"
SMALL = ["model.refit=none",  # one version per run: these tests count versions (tests/test_refit.py: the refit)
         "index_dates.train=[2023-08-01, 2023-11-01]", "index_dates.test=2024-11-01",
         "evaluation.n_bootstrap=10", "evaluation.figures=false", "model.lightgbm.n_estimators=60",
         "model.baselines=[prior_use]", "guards.min_events_train=20",
         "guards.min_events_calibration=20", "guards.min_events_test=20"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "synthetic"
    write_population(out, 2500, start="2021-11-01", years=4, seed=11, truth_dates=[AS_OF], n_futures=4)
    return out


@pytest.fixture(scope="module")
def registry(data_dir, tmp_path_factory, new_mlflow_store) -> dict:
    """Version 1 (champion) and version 2 (a weaker model: 15 trees) of one model."""
    store = tmp_path_factory.mktemp("mlflow")
    uri = new_mlflow_store(store)
    base = [f"data.path={data_dir}", f"tracking.uri={uri}", f"tracking.registered_model={NAME}", *SMALL]
    run_training(load_config(None, base))
    run_training(load_config(None, [*base, "model.lightgbm.n_estimators=15"]))
    tracking.promote(NAME, "1", alias="champion", uri=uri)
    return {"uri": uri, "store": store}


@pytest.fixture(scope="module")
def evaluated(registry, data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    run = run_evaluation(f"{NAME}/2", data_dir, AS_OF, against=f"{NAME}@champion", out_dir=root / "report",
                         card_dir=root / "models", uri=registry["uri"], n_boot=20, min_events=50,
                         band_resamples=5)  # the figures are looked at, not the band's width
    return run, root


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_report_is_self_contained_with_the_headline_numbers(evaluated):
    run, _ = evaluated
    html = (run.out_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    parser = _Refs()
    parser.feed(html)
    # Figures embedded; the only other references are links within the page (the TRIPOD+AI checklist's).
    assert len(parser.refs) >= 6 and all(r.startswith(("data:image/png;base64,", "#")) for r in parser.refs)
    cand = run.evaluation.headline.loc["candidate"]
    assert f"{cand['auroc']:.3f}" in html and f"{cand['calibration_slope']:.2f}" in html
    assert "85+" in html and "40-55" in html and "deprivation quintile" in html and "PRISMATIC" in html
    assert {p.name for p in (run.out_dir / "figures").iterdir()} >= {"roc.png", "calibration.png", "decision_curve.png"}
    subgroups = pd.read_csv(run.out_dir / "tables" / "subgroups.csv")
    assert set(subgroups["attribute"]) == {"age band", "sex", "deprivation quintile", "ethnicity group", "GP practice"}


def test_evaluation_scores_the_models_on_the_same_people(evaluated, registry, data_dir):
    run, _ = evaluated
    ev = run.evaluation
    assert list(ev.headline.index) == ["candidate", "champion", "prior_use", "oracle"]
    assert ev.n_events >= 50 and len(ev.y) == ev.n
    champion = tracking.load_model(NAME, alias="champion", uri=registry["uri"])
    assert champion.version == "1" and run.candidate.version == "2"
    row = ev.comparison.set_index("versus").loc["champion"]
    assert row["ci_low"] <= row["auroc_difference"] <= row["ci_high"]


def test_evaluation_is_logged_and_linked_to_the_version(evaluated, registry):
    import mlflow

    run, _ = evaluated
    found = tracking.find_evaluation(NAME, "2", uri=registry["uri"])
    assert found.info.run_id == run.run_id
    assert found.data.tags["riskstrat.against_version"] == "1"
    assert found.data.metrics["candidate.auroc"] == pytest.approx(run.evaluation.headline.loc["candidate", "auroc"])
    version = mlflow.MlflowClient().get_model_version(NAME, "2")
    assert version.tags["riskstrat.evaluation_run_id"] == run.run_id
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "evaluation")}
    assert "evaluation/report.html" in artifacts


def test_the_shap_figures_are_in_the_report_its_json_and_the_logged_run(evaluated, registry):
    import json

    import mlflow

    run, _ = evaluated
    shap = json.loads((run.out_dir / "evaluation.json").read_text(encoding="utf-8"))["context"]["shap"]
    assert shap["agrees"] and shap["max_difference"] <= 1e-9 and shap["n_sample"] == min(2000, shap["n_people"])
    figures = {p.name for p in (run.out_dir / "figures").iterdir()}
    assert "shap_summary.png" in figures and len([f for f in figures if f.startswith("dependence_")]) == 3
    html = re.sub(r"\s+", " ", (run.out_dir / "report.html").read_text(encoding="utf-8"))
    assert f"a random sample of {shap['n_sample']:,} of the {shap['n_people']:,} people evaluated" in html
    assert "not what causes the outcome" in html
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.run_id, "evaluation/figures")}
    assert "evaluation/figures/shap_summary.png" in logged


def test_card_and_default_gate_are_drafted(evaluated):
    run, root = evaluated
    card = (root / "models" / NAME / "card.md").read_text()
    for heading in ("## Intended use", "## Population", "## Outcome", "## Data sources", "## Exclusions",
                    "## Performance", "## Subgroup results", "## Known weak groups", "PRISMATIC", "## Approval"):
        assert heading in card
    assert "an emergency admission or death" in card
    assert "- Approved by: _to be completed by the approver_" in card
    assert (root / "models" / NAME / "gate.yaml").exists()


def test_refuses_immature_outcomes_and_too_few_events(registry, data_dir, tmp_path):
    with pytest.raises(CensoredIndexDateError, match="runs past the end of the data"):
        run_evaluation(f"{NAME}@champion", data_dir, "2025-06-01", uri=registry["uri"], out_dir=tmp_path / "r",
                       card_dir=None, log=False)
    with pytest.raises(TooFewEventsError, match="need 100000"):
        run_evaluation(f"{NAME}@champion", data_dir, AS_OF, uri=registry["uri"], out_dir=tmp_path / "r",
                       card_dir=None, log=False, min_events=100_000)


def test_a_stray_late_event_does_not_let_labels_run_past_the_data(registry, data_dir, tmp_path, with_a_stray_event):
    # The data run to 2025-10-31; one contact dated 2026-06-15 and no dataset.json made the latest event
    # the extract end, and a model was tested on labels to 2026-06-01 that the data do not cover.
    stray = with_a_stray_event(data_dir, tmp_path / "stray", "2026-06-15")
    with pytest.raises(CensoredIndexDateError, match=r"end of the data \(2025-10-31\)"):
        run_evaluation(f"{NAME}@champion", stray, "2025-06-01", uri=registry["uri"], out_dir=tmp_path / "r",
                       card_dir=None, log=False)


def test_load_model_by_version_and_bad_references(registry):
    assert tracking.load_model_ref(f"{NAME}/1", uri=registry["uri"]).version == "1"
    with pytest.raises(tracking.RegistryError, match=r"model eval-emergency has no version 9 \(versions: 1, 2\)"):
        tracking.load_model_ref(f"{NAME}/9", uri=registry["uri"])
    with pytest.raises(tracking.RegistryError, match="not NAME@ALIAS or NAME/VERSION"):
        tracking.parse_model_ref(f"{NAME}/latest")


def _gate(folder: Path, **settings) -> Path:
    (folder / NAME).mkdir(parents=True, exist_ok=True)
    (folder / NAME / "gate.yaml").write_text("".join(f"{k}: {v}\n" for k, v in settings.items()))
    return folder


def test_promote_is_gated(evaluated, registry, tmp_path):
    import mlflow

    from riskstrat.cli import app

    cli = CliRunner()
    uri = ["--tracking-uri", registry["uri"]]
    # Version 1 was never evaluated: refused, nothing moves.
    res = cli.invoke(app, ["promote", NAME, "1", "--alias", "challenger", *uri, "--card-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no evaluation of eval-emergency version 1" in res.output
    assert tracking.load_champion_version(NAME, alias="challenger", uri=registry["uri"]) is None
    # Version 2 against a strict gate: refused, the failing criterion listed.
    strict = _gate(tmp_path / "strict", min_events=10, min_subgroup_auroc=0.999, calibration_slope_min=0.01,
                   calibration_slope_max=100, auroc_margin=1)
    res = cli.invoke(app, ["promote", NAME, "2", *uri, "--card-dir", str(strict)])
    assert res.exit_code == 2 and "subgroup AUROC floor" in res.output and "nothing was promoted" in res.output
    assert tracking.load_champion_version(NAME, uri=registry["uri"]) == "1"
    # --force needs a reason; with one, the alias moves and the override is recorded on the version.
    res = cli.invoke(app, ["promote", NAME, "2", *uri, "--card-dir", str(strict), "--force"])
    assert res.exit_code == 2 and "--force needs --reason" in res.output
    res = cli.invoke(app, ["promote", NAME, "2", *uri, "--card-dir", str(strict), "--force", "--reason", "pilot"])
    assert res.exit_code == 0, res.output
    tags = mlflow.MlflowClient().get_model_version(NAME, "2").tags
    assert tags["riskstrat.gate_override.reason"] == "pilot" and tags["riskstrat.gate_override.user"]
    assert "subgroup AUROC floor" in tags["riskstrat.gate_override.failed"]
    # Back to version 1, then version 2 again through a gate it passes: no override needed.
    tracking.promote(NAME, "1", uri=registry["uri"])
    lenient = _gate(tmp_path / "lenient", min_events=10, min_subgroup_auroc=0.0, calibration_slope_min=0.01,
                    calibration_slope_max=100, auroc_margin=1, o_e_min=0.01, o_e_max=100, tiers="false",
                    subgroup_calibration="false", subgroup_vs_prior_use="false")
    res = cli.invoke(app, ["promote", NAME, "2", *uri, "--card-dir", str(lenient)])
    assert res.exit_code == 0 and f"{NAME}@champion -> version 2 (was version 1)" in res.output
    tracking.promote(NAME, "1", uri=registry["uri"])


def test_cli_evaluate_prints_the_headline(registry, data_dir, tmp_path, monkeypatch):
    from riskstrat.cli import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["evaluate", "--model", f"{NAME}@champion", "--data", str(data_dir), "--as-of", AS_OF,
                                   "--tracking-uri", registry["uri"], "--n-boot", "10", "--min-events", "50", "-q"])
    assert res.exit_code == 0, res.output
    assert "candidate" in res.output and "prior_use" in res.output and "report:" in res.output
    assert (tmp_path / "models" / NAME / "card.md").exists()
    bad = CliRunner().invoke(app, ["evaluate", "--model", f"{NAME}@champion", "--data", str(data_dir),
                                   "--as-of", "2025-09-01", "--tracking-uri", registry["uri"], "-q"])
    assert bad.exit_code == 2 and "have not matured" in bad.output


def test_no_person_identifier_in_the_evaluation_outputs(evaluated, data_dir):
    run, root = evaluated
    ids = set(pd.read_parquet(data_dir / "persons.parquet")["person_id"].astype(str))
    leaked = []
    for path in [*run.out_dir.rglob("*"), *(root / "models").rglob("*")]:
        if path.is_file() and path.suffix != ".png":
            text = path.read_text(encoding="utf-8")
            leaked += [p for p in ids if p in text][:3]
    assert not leaked, f"person ids in the evaluation outputs: {leaked}"


# ----------------------------------------------------------------------------- high cost: baselines, cost, browser

HIGH_COST = "eval-high-cost"


@pytest.fixture(scope="module")
def high_cost(data_dir, registry, tmp_path_factory):
    """A high-cost model whose training run logged a logistic baseline, evaluated at AS_OF on everyone (its
    held-out people alone have too few of the top 5% for min_events)."""
    base = [f"data.path={data_dir}", f"tracking.uri={registry['uri']}", f"tracking.registered_model={HIGH_COST}",
            "target.name=high_cost", *SMALL, "model.baselines=[logistic, prior_use]"]
    trained = run_training(load_config(None, base))
    root = tmp_path_factory.mktemp("evaluation-high-cost")
    run = run_evaluation(f"{HIGH_COST}/1", data_dir, AS_OF, out_dir=root / "report", card_dir=None,
                         uri=registry["uri"], n_boot=20, min_events=50, log=False, include_seen=True,
                         band_resamples=5)
    return run, trained


def test_high_cost_evaluation_has_the_runs_logistic_baseline_and_the_cost(high_cost, data_dir):
    import numpy as np

    from riskstrat.modeling.config import DataConfig
    from riskstrat.features.reference import build_features
    from riskstrat.outcomes.labels import future_cost
    from riskstrat.data.load import load_data

    run, trained = high_cost
    ev = run.evaluation
    assert list(ev.headline.index) == ["candidate", "logistic", "prior_use", "oracle"]
    assert set(ev.comparison["versus"]) == {"logistic", "prior_use", "oracle"}
    # The logistic baseline is the one fitted in the candidate's training run, on the same people.
    from riskstrat.features.spec import FeatureSpec

    records = load_data(DataConfig(path=data_dir))
    features = build_features(records, AS_OF, spec=FeatureSpec.from_dict(trained.result.model.metadata["feature_spec"]))
    labels = trained.config.target.labels(records, AS_OF, features.index, extract_end="2025-10-31")
    features = features[labels.notna().to_numpy()]
    logistic = tracking.load_baseline(run.candidate.run_id, "logistic", uri=trained.config.tracking.uri)
    np.testing.assert_allclose(ev.scores["logistic"], logistic.predict_risk(features))
    # The cost evidence is these people's actual cost over the next year, in the data set's pounds.
    cost = ev.cost
    assert cost.currency == "GBP"
    assert cost.total == pytest.approx(future_cost(records, AS_OF, features.index).sum())
    assert cost.summary["predicted_total"] == pytest.approx(run.candidate.risk_model.predict_cost(features).sum())
    top = cost.capture.set_index(["model", "list"])
    assert top.loc[("by actual cost", "top 5%"), "cost_share"] >= top.loc[("candidate", "top 5%"), "cost_share"]
    assert ev.metrics["candidate.cost_share_top_5pct"] == top.loc[("candidate", "top 5%"), "cost_share"]
    html = (run.out_dir / "report.html").read_text(encoding="utf-8")
    assert "What each list catches of next-year cost" in html and "£" in html
    assert f"fitted in the candidate&#39;s training run {run.candidate.run_id} on its training rows" in html
    assert (run.out_dir / "tables" / "cost_capture.csv").exists()


_REPORT_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.from(document.images);
  var out = {images: imgs.length,
             decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0 && i.naturalHeight > 0; }).length,
             shown: imgs.filter(function (i) { var b = i.getBoundingClientRect(); return b.width > 100 && b.height > 100; }).length,
             headings: Array.from(document.querySelectorAll("h2")).map(function (h) { return h.textContent; }),
             headlineModels: Array.from(document.querySelector("#headline + p + .scroll table").querySelectorAll(
               "tbody tr td:first-child")).map(function (td) { return td.textContent; }),
             tables: document.querySelectorAll("table").length,
             overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
             resources: performance.getEntriesByType("resource").map(function (e) { return e.name; }),
             external: Array.from(document.querySelectorAll("[src],[href]")).map(function (e) {
               return e.getAttribute("src") || e.getAttribute("href"); }).filter(function (u) { return !/^(data:image\\/png;base64,|#)/.test(u); })};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def test_report_in_headless_chromium(high_cost, tmp_path):
    """The report loads nothing from anywhere, every figure decodes and is displayed, the headline
    and cost tables are there."""
    import html as html_lib
    import json

    from riskstrat.scoring.listpage import chromium, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it)")
    run, _ = high_cost
    page = (run.out_dir / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _REPORT_PROBE + "</body>"), encoding="utf-8")
    found = re.search(r'<pre id="probe">(.*?)</pre>', chromium(probe, width=1280, height=800), re.S)
    assert found
    seen = json.loads(html_lib.unescape(found.group(1)))
    # A tablet's width: wide tables scroll in their own box, the page does not.
    narrow = re.search(r'<pre id="probe">(.*?)</pre>', chromium(probe, width=768, height=1024), re.S)
    assert narrow and json.loads(html_lib.unescape(narrow.group(1)))["overflow"] is False
    n_figures = len(list((run.out_dir / "figures").iterdir()))
    assert seen["images"] == n_figures and seen["decoded"] == n_figures and seen["shown"] == n_figures, seen
    assert seen["resources"] == [] and seen["external"] == [], seen
    for heading in ("Headline", "Discrimination", "Calibration", "Case finding", "Cost", "Subgroups", "Global drivers"):
        assert heading in seen["headings"], seen["headings"]
    assert seen["headlineModels"] == [HIGH_COST, "logistic regression", "the prior use rule", "the true risk"], seen
    assert seen["overflow"] is False
    assert seen["tables"] >= 10


# ----------------------------------------------------------------------------- in-sample: dates and people
# These log evaluations of version 1, so they come after test_promote_is_gated (which needs it unevaluated).

TRAINING_DATE = "2023-11-01"   # one of the models' training dates (SMALL); 2023-11-01 + 365 days = 2024-10-31


def _labelled_groups(data_dir, as_of):
    """The split group of every person labelled at ``as_of`` (the reference: train.person_groups with the
    configured seed and fractions, not the code under test)."""
    from riskstrat.modeling.config import DataConfig
    from riskstrat.features.reference import build_features
    from riskstrat.data.load import load_data
    from riskstrat.modeling.train import person_groups

    cfg = load_config(None, [f"data.path={data_dir}"])
    records = load_data(DataConfig(path=data_dir))
    features = build_features(records, as_of)
    labels = cfg.target.labels(records, as_of, features.index, extract_end="2025-10-31")
    ids = features.index[labels.notna().to_numpy()]
    groups = person_groups(ids, test_fraction=cfg.split.test_fraction,
                           calibration_fraction=cfg.split.calibration_fraction, seed=cfg.split.seed)
    return groups.reindex(ids)


def test_evaluation_at_a_training_date_is_in_sample_and_promote_refuses_it(registry, data_dir, tmp_path):
    import json

    from riskstrat.cli import app

    run = run_evaluation(f"{NAME}/1", data_dir, TRAINING_DATE, out_dir=tmp_path / "report", card_dir=tmp_path / "models",
                         uri=registry["uri"], n_boot=10, min_events=20, figures=False)
    o = run.overlap
    assert o.time == "in-sample" and o.labels_end == "2024-10-31" and o.people == "unseen"
    # Everyone labelled at a training date in the training or calibration group had a row then: the
    # figures are on the held-out (test) group alone, and the counts add up.
    groups = _labelled_groups(data_dir, TRAINING_DATE)
    assert run.evaluation.n == o.n_unseen == int((groups == "test").sum())
    assert o.n_seen == int(groups.isin(["train", "calibration"]).sum()) and o.n_seen + o.n_unseen == len(groups)
    assert o.seen_by_date[TRAINING_DATE] == o.n_seen and 0 < o.seen_by_date["2023-08-01"] <= o.n_seen
    html = (run.out_dir / "report.html").read_text(encoding="utf-8")
    assert '<p id="in-sample-time" class="fail">In-sample: 2023-11-01 is one of the model&#39;s training dates' in html
    said = f"Tested on {o.n_unseen:,} people not used in training; {o.n_seen:,} people who were (at 2023-08-01 ("
    assert said in html and f"2023-11-01 ({o.n_seen:,})" in html
    saved = json.loads((run.out_dir / "evaluation.json").read_text())["context"]["training_overlap"]
    assert saved["time"] == "in-sample" and saved["n_seen"] == o.n_seen and said in saved["sentences"][1]
    assert "In-sample: 2023-11-01" in (tmp_path / "models" / NAME / "card.md").read_text()
    timing = {c.name: c for c in run.gate}["evaluated after the training labels"]
    assert not timing.passed and "2023-11-01" in timing.detail and "2024-10-31" in timing.detail
    # promote reads that evaluation: refused on the dates even through a gate that passes everything else.
    lenient = _gate(tmp_path / "lenient", min_events=10, min_subgroup_auroc=0.0, calibration_slope_min=0.01,
                    calibration_slope_max=100, auroc_margin=1, o_e_min=0.01, o_e_max=100, tiers="false",
                    subgroup_calibration="false", subgroup_vs_prior_use="false")
    uri = ["--tracking-uri", registry["uri"], "--card-dir", str(lenient)]
    res = CliRunner().invoke(app, ["promote", NAME, "1", "--alias", "insample", *uri])
    assert res.exit_code == 2, res.output
    assert "evaluated after the training labels: evaluated at 2023-11-01, before 2024-10-31" in res.output
    assert tracking.load_champion_version(NAME, alias="insample", uri=registry["uri"]) is None
    # At the test date the dates are out of sample: the same gate lets it through.
    later = run_evaluation(f"{NAME}/1", data_dir, AS_OF, out_dir=tmp_path / "later", card_dir=None,
                           uri=registry["uri"], n_boot=10, min_events=20, figures=False)
    assert later.overlap.time == "out of sample in time"
    assert {c.name: c.passed for c in later.gate}["evaluated after the training labels"]
    res = CliRunner().invoke(app, ["promote", NAME, "1", "--alias", "insample", *uri])
    assert res.exit_code == 0, res.output
    assert tracking.load_champion_version(NAME, alias="insample", uri=registry["uri"]) == "1"


def default_html(run) -> str:
    return (run.out_dir / "report.html").read_text(encoding="utf-8")


def test_unseen_people_by_default_and_everyone_when_asked(evaluated, registry, data_dir):
    default, _ = evaluated  # version 2 at the test date, people not used in training only
    both = run_evaluation(f"{NAME}/2", data_dir, AS_OF, card_dir=None, uri=registry["uri"], n_boot=20, min_events=50,
                          log=False, include_seen=True, out_dir=default.out_dir.parent / "both", figures=False)
    o = both.overlap
    assert default.overlap.people == "unseen" and o.people == "all" and o.time == "out of sample in time"
    assert both.evaluation.n == o.n_labelled == o.n_seen + o.n_unseen and default.evaluation.n == o.n_unseen
    assert o.n_seen > 0 and set(o.seen_by_date) == {"2023-08-01", "2023-11-01"}
    # The held-out people at the test date: at least the training run's test rows (plus newcomers since).
    import mlflow

    trained = mlflow.MlflowClient(tracking_uri=registry["uri"]).get_run(both.candidate.run_id).data.metrics
    assert default.evaluation.n >= trained["data.test_rows"]
    # Beside everyone's figures, the unseen people's: the same numbers as the default evaluation's.
    unseen = {row["model"]: row for row in both.unseen["headline"]}
    assert both.unseen["n"] == default.evaluation.n and both.unseen["n_events"] == default.evaluation.n_events
    assert unseen["candidate"]["auroc"] == pytest.approx(default.evaluation.headline.loc["candidate", "auroc"])
    assert both.evaluation.headline.loc["candidate", "auroc"] != pytest.approx(unseen["candidate"]["auroc"], abs=1e-6)
    html = (both.out_dir / "report.html").read_text(encoding="utf-8")
    assert f"Tested on all {o.n_labelled:,} people, including {o.n_seen:,} people who were" in html
    assert "The people not used in training only" in html and (both.out_dir / "tables" / "headline_unseen.csv").exists()
    # Without figures (evaluation.figures: false) the report says so, draws none, and keeps every table.
    assert "Figures not drawn" in html and "data:image/png" not in html
    assert "Figures not drawn" not in default_html(default)
    assert not list((both.out_dir / "figures").iterdir()) and both.dependence == {}
    tables = {p.name for p in (default.out_dir / "tables").iterdir()}
    assert {p.name for p in (both.out_dir / "tables").iterdir()} >= tables


def test_training_records_its_design_without_people(registry):
    import mlflow

    loaded = tracking.load_model_ref(f"{NAME}/1", uri=registry["uri"])
    design = loaded.risk_model.metadata["training_design"]
    assert design["index_dates"] == ["2023-08-01", "2023-11-01"] and design["horizon_days"] == 365
    assert design["split"]["seed"] == 42 and design["split"]["rule"].startswith("blake2b")
    logged = mlflow.artifacts.load_dict(f"runs:/{loaded.run_id}/training_design.json")
    assert logged == design
    # Trained with evaluation.figures: false (tests/test_tracking.py has the plots): the run logs none.
    artifacts = {a.path for a in mlflow.MlflowClient(tracking_uri=registry["uri"]).list_artifacts(loaded.run_id)}
    assert "training_design.json" in artifacts and "plots" not in artifacts


def test_a_model_trained_before_the_design_was_recorded(registry, data_dir):
    """Its dates come from its training run's configuration; whether its people were used is unknown,
    and said so."""
    from riskstrat.evaluation._overlap import training_overlap
    from riskstrat.pipelines.evaluate import training_design_of
    from riskstrat.data.load import load_data
    from riskstrat.modeling.config import DataConfig

    loaded = tracking.load_model_ref(f"{NAME}/1", uri=registry["uri"])
    del loaded.risk_model.metadata["training_design"]
    design = training_design_of(loaded, uri=registry["uri"])
    assert design == {"index_dates": ["2023-08-01", "2023-11-01"], "test_date": AS_OF, "horizon_days": 365}
    ids = pd.Index(pd.read_parquet(data_dir / "persons.parquet")["person_id"].astype(str))
    overlap, seen = training_overlap(ids, load_data(DataConfig(path=data_dir)), TRAINING_DATE, design)
    assert seen is None and overlap.people == "all" and overlap.time == "in-sample"
    assert "unknown for models trained before this version" in overlap.people_sentence()


def test_promote_of_a_missing_version_says_so(registry, tmp_path):
    from riskstrat.cli import app

    res = CliRunner().invoke(app, ["promote", NAME, "99", "--tracking-uri", registry["uri"], "--card-dir", str(tmp_path)])
    assert res.exit_code == 2 and "model eval-emergency has no version 99 (versions: 1, 2)" in res.output
    assert "gate" not in res.output  # not "does not pass the promotion gate"


def test_a_comparison_across_outcomes_is_a_refusal(registry, high_cost, data_dir):
    from riskstrat.cli import app
    from riskstrat.errors import RiskstratError

    uri = ["--tracking-uri", registry["uri"]]
    with pytest.raises(RiskstratError, match="compare models of the same outcome"):
        run_evaluation(f"{NAME}/1", data_dir, AS_OF, against=f"{HIGH_COST}/1", uri=registry["uri"], log=False,
                       card_dir=None)
    res = CliRunner().invoke(app, ["evaluate", "--model", f"{NAME}/1", "--against", f"{HIGH_COST}/1", "--data",
                                   str(data_dir), "--as-of", AS_OF, *uri, "-q"])
    assert res.exit_code == 2 and "compare models of the same outcome" in res.output
    assert issubclass(TooFewEventsError, RiskstratError)


def test_a_high_cost_model_is_refused_on_data_without_health_care_costs(high_cost, data_dir, tmp_path,
                                                                      without_health_costs):
    # Every health-care cost blank: the model was evaluated on social-care costs alone (AUROC 0.949).
    from riskstrat.outcomes import MissingCostsError

    blank = without_health_costs(data_dir, tmp_path / "blank")
    with pytest.raises(MissingCostsError, match=r"cost column is blank in every row of inpatient_spells, .*gp_contacts"):
        run_evaluation(f"{HIGH_COST}/1", blank, AS_OF, out_dir=tmp_path / "r", card_dir=None,
                       uri=high_cost[1].config.tracking.uri, log=False)


def test_an_out_folder_riskstrat_did_not_write_is_refused_and_kept(registry, data_dir, tmp_path):
    # The red team's case: --out at a folder of one's own (or the lists' output folder) was deleted, exit 0.
    from riskstrat.data.io import FolderNotOursError

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("years of work")
    with pytest.raises(FolderNotOursError, match="is not a riskstrat evaluation report"):
        run_evaluation(f"{NAME}/1", data_dir, AS_OF, out_dir=victim, card_dir=None, uri=registry["uri"], n_boot=10,
                       min_events=20, log=False)
    assert [p.name for p in victim.iterdir()] == ["thesis.txt"] and (victim / "thesis.txt").read_text() == "years of work"
