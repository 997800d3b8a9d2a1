"""The analyst walkthrough notebook runs end to end on small data, so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("RISKSTRAT_NB_PEOPLE", "2500")
    monkeypatch.setenv("RISKSTRAT_NB_YEARS", "4")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    errors = [o for outs in outputs.values() for o in outs if o.get("output_type") == "error"]
    assert not errors
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "")
                     for outs in outputs.values() for o in outs)
    assert "lightgbm" in text and "oracle" in text          # the comparison table
    assert "mean |SHAP|" in text                             # the drivers table
    assert "lightgbm.auroc" in text                          # the MLflow run was found
    # The calibration figure is shown as an image (it used to print only "<Figure size ...>").
    calibration = next(i for i, c in enumerate(nb.cells) if "calibration_figure" in c.source)
    assert any("image/png" in o.get("data", {}) for o in outputs[calibration])
    assert (tmp_path / "mlflow.db").exists() and (tmp_path / "riskstrat-data" / "walkthrough").is_dir()
