"""Command-line interface: `riskstrat --help`."""

from riskstrat.cli.app import app

# Each module registers its commands on `app` when imported.
from riskstrat.cli import synth_cmd  # noqa: E402,F401


def main() -> None:
    app()
