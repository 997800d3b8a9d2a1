"""From features and labels to a model: the run's config, the person split and index dates, the risk
pyramid's rules, training, search, calibration and the refit."""
