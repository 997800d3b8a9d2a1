"""MLflow in one place: what training and evaluation log, what scoring loads, the aliases."""
