"""`python -m riskstrat.cli`: the same as the `riskstrat` command."""

from riskstrat.cli import main

main()
