"""`riskstrat demo`: the whole path on synthetic data, under the current folder."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from riskstrat.cli.app import app, out
from riskstrat.cli.progress import Stage, libraries_quiet, progress_bar


@app.command()
def demo(
    people: int = typer.Option(20_000, "--people", "-n", min=3000,
                               help="Size of the synthetic population (under 10,000: tested on everyone at the "
                                    "test date, split.mode=temporal_only)."),
    seed: int = typer.Option(42, help="Seed of the synthetic population."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final tables."),
) -> None:
    """Run everything on a synthetic population, under the current folder.

    Generates the population, trains and registers the emergency-admission and high-cost models,
    compares them with the logistic baseline, the prior-use rule and the true risk, evaluates each
    new version at the test date (report and models/<name>/card.md; first versions become champion
    without the gate), then scores the population into lists.

    Writes riskstrat-data/, models/, mlflow.db, mlartifacts/ and riskstrat-output/ in the current folder;
    running it again reuses the data and registers new model versions.

    Example: riskstrat demo --people 20000 --seed 42
    """
    from riskstrat.cli.train_cmd import print_comparison
    from riskstrat.pipelines.demo import DEMO_DATA, ensure_synthetic, run_demo_training, tracking_uri

    t0 = time.perf_counter()
    stage = Stage(quiet=quiet)
    with progress_bar("generating the synthetic population", quiet=quiet) as update:
        meta, made = ensure_synthetic(DEMO_DATA, people=people, seed=seed, progress=update)
    stage(("generated" if made else "reusing") + f" {meta['n_people']:,} synthetic people in {DEMO_DATA}")
    with libraries_quiet(quiet):
        result = run_demo_training(data_dir=DEMO_DATA, stage=stage)
    for target, run in result.runs.items():
        outcome = run.result.model.metadata["outcome"]["words"]
        print_comparison(run.result, title=f"{target.replace('_', ' ')} ({outcome}): temporal test set")
    from riskstrat.pipelines.demo import run_demo_scoring

    with libraries_quiet(quiet):
        manifest = run_demo_scoring(meta, stage=stage)
    for target, (name, version, new) in result.champions.items():
        run = result.runs[target]
        refit = run.refit_logged.model_version if run.refit_logged is not None else None
        evaluated = run.logged.model_version
        out.print(f"{name}@champion = version {version}"
                  + ((f" (promoted now, without the gate: the refit for deployment of version {evaluated}, whose "
                      f"evaluation it inherits)" if refit else " (promoted now) as the first version, without the gate")
                     if new else f" (kept; new version {refit or evaluated} registered"
                     + (f", the refit of version {evaluated}" if refit else "")
                     + ", promote it with riskstrat promote)"))
        evaluation = result.evaluations.get(target)
        if evaluation is not None and not isinstance(evaluation, str):
            failed = [c.name for c in evaluation.gate if not c.passed]
            out.print(f"  evaluation: {evaluation.out_dir / 'report.html'}; card: {evaluation.card_path}; gate: "
                      + ("passes" if not failed else "fails on " + ", ".join(failed)), soft_wrap=True)
    c = manifest["counts"]
    first = sorted(Path(manifest["output_dir"], "practices").iterdir())[0]
    out.print(f"Lists for {manifest['month']}: {c['listed']:,} people listed in {c['practices']} practices "
              f"({c['held_out']:,} held out for impact evaluation) in {manifest['output_dir']}")
    out.print(f"  open one: {first / 'list.html'}  (also list.xlsx, list.csv; summary.csv for commissioners)")
    out.print(f"  worklist: riskstrat serve --lists {Path(manifest['output_dir']).parent} --demo  (a demo coordinator "
              f"account for one practice; the password is printed when it starts)", soft_wrap=True)
    out.print(f"MLflow: {tracking_uri()}  (browse: mlflow ui --backend-store-uri {tracking_uri()})")
    out.print(f"done in {time.perf_counter() - t0:.0f}s")
