"""The analyst walkthrough notebook runs end to end on small data, so it never rots, and its output is
clean: figures as images, no library noise, no person identifiers."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def _text(output) -> str:
    data = output.get("data", {})
    return output.get("text", "") + str(data.get("text/plain", "")) + str(data.get("text/html", ""))


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKSTRAT_NB_PEOPLE", "2500")
    monkeypatch.setenv("RISKSTRAT_NB_YEARS", "4")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(_text(o) for o in outputs)

    # No library noise: nothing on stderr (warnings, MLflow's event lines, progress bars) and no
    # warning printed any other way.
    stderr = [o["text"] for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    assert not stderr, stderr
    assert not re.search(r"\w+Warning\b|Downloading artifacts|INFO mlflow|alembic", text)

    # Every figure is shown as an image, never as "<Figure size 600x500 with 1 Axes>" alone.
    figure_cells = [c for c in code if "figure" in c.metadata.get("tags", [])]
    assert len(figure_cells) >= 4
    for cell in figure_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images and len(images) == len(cell.outputs), cell.source
    assert not [o for o in outputs if "<Figure size" in str(o.get("data", {}).get("text/plain", ""))
                and "image/png" not in o.get("data", {})]
    calibration = next(c for c in figure_cells if 'figures["calibration"]' in c.source)
    assert sum("image/png" in o.get("data", {}) for o in calibration.outputs) == 2

    # The evaluation's evidence, as `riskstrat evaluate` computes it.
    for shown in ("candidate", "logistic", "prior_use", "oracle",      # the comparison
                  "auroc_difference", "events_per_1000_flagged",       # paired differences, case finding
                  "85+", "deprivation quintile", "small",              # subgroups, small groups flagged
                  "mean_abs_shap", "discrimination within groups"):  # drivers, the gate
        assert shown in text, shown
    assert "candidate.auroc" in text                                     # the MLflow evaluation run was found
    assert (tmp_path / "riskstrat-output" / "evaluations" / "walkthrough" / "report.html").exists()
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "riskstrat-data" / "walkthrough").is_dir()

    # No person identifier in any output.
    people = pd.read_parquet(tmp_path / "riskstrat-data" / "walkthrough" / "persons.parquet", columns=["person_id"])
    assert not [p for p in people["person_id"].astype(str) if p in text]
