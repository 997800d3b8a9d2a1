"""Command-line interface: `riskstrat --help`."""

from riskstrat.cli.app import app

# Each module registers its commands on `app` when imported.
from riskstrat.cli import synth_cmd  # noqa: E402,F401
from riskstrat.cli import import_cmd  # noqa: E402,F401
from riskstrat.cli import validate_cmd  # noqa: E402,F401
from riskstrat.cli import train_cmd  # noqa: E402,F401
from riskstrat.cli import demo_cmd  # noqa: E402,F401
from riskstrat.cli import score_cmd  # noqa: E402,F401
from riskstrat.cli import evaluate_cmd  # noqa: E402,F401
from riskstrat.cli import key_cmd  # noqa: E402,F401
from riskstrat.cli import monitor_cmd  # noqa: E402,F401
from riskstrat.cli import serve_cmd  # noqa: E402,F401
from riskstrat.cli import workbook_cmd  # noqa: E402,F401


def main() -> None:
    import logging
    import os

    # MLflow is chatty at INFO and draws its own progress bars; keep the CLI's output ours.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    app()
