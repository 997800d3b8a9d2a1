"""An evaluation's logged metrics that the default gate passes (tests of the gate and of the refit
verdict change one number at a time): every interval inside its range, the one group with enough
events shown no worse than the prior-use rule."""

GOOD = {"n_events": 400.0, "candidate.n_positive": 400.0, "candidate.auroc": 0.78,
        "candidate.calibration_slope": 1.02, "candidate.calibration_slope_ci_low": 0.92,
        "candidate.calibration_slope_ci_high": 1.12, "candidate.calibration_slope_not_estimable": 0.0,
        "candidate.o_e_ratio": 1.0,
        "minus_champion.auroc": 0.012, "minus_champion.auroc_ci_low": 0.004, "minus_champion.auroc_ci_high": 0.020,
        "minus_logistic.auroc": 0.0, "minus_logistic.auroc_ci_low": -0.016, "minus_logistic.auroc_ci_high": 0.016,
        "tier.very high.o_e_ratio": 1.1, "tier.very high.o_e_ci_low": 0.6, "tier.very high.o_e_ci_high": 1.8,
        "tier.very high.observed": 11.0, "tier.very high.expected": 10.0,
        "group.age band.40-55.auroc": 0.61, "group.age band.40-55.auroc_ci_low": 0.55,
        "group.age band.40-55.auroc_ci_high": 0.67, "group.age band.40-55.o_e_ratio": 0.9,
        "group.age band.40-55.o_e_ci_low": 0.7, "group.age band.40-55.o_e_ci_high": 1.15,
        "group.age band.40-55.minus_prior_use": 0.01, "group.age band.40-55.minus_prior_use_ci_low": -0.04,
        "group.age band.40-55.minus_prior_use_ci_high": 0.06}
