"""Evaluation: the evidence a reviewer signs off, in one place.

- :func:`metric_frame`: metrics overall and by group (fairlearn's ``MetricFrame`` shape);
- :func:`subgroup_attributes`: age band, sex, deprivation quintile, ethnicity group, GP practice;
- :func:`evaluate_scores`: a candidate's full evidence against other scores on the same rows;
- :mod:`riskstrat.evaluation.held_out`: a training run's models measured on its temporal test set;
- :mod:`riskstrat.evaluation.gate`: the promotion gate read from ``models/<name>/gate.yaml`` and its
  criteria (:mod:`riskstrat.pipelines.promote` checks a registered version against them);
- :mod:`riskstrat.pipelines.evaluate`: ``riskstrat evaluate`` (registry, data, report, MLflow).
"""

from riskstrat.evaluation._evaluate import (CANDIDATE, CostEvidence, Evaluation, cost_evidence, evaluate_scores,
                                            subgroup_metric_set)
from riskstrat.evaluation._frame import MetricFrame, metric_frame
from riskstrat.evaluation._groups import AGE_BANDS, ATTRIBUTES, age_band, deprivation_quintile, subgroup_attributes

__all__ = ["AGE_BANDS", "ATTRIBUTES", "CANDIDATE", "CostEvidence", "Evaluation", "MetricFrame", "age_band",
           "cost_evidence", "deprivation_quintile", "evaluate_scores", "metric_frame", "subgroup_attributes",
           "subgroup_metric_set"]
