"""Wiring: the steps (pure functions in the stages below) joined with I/O and tracking into whole runs.

One module a run, each function one call a step: :mod:`~riskstrat.pipelines.train`,
:mod:`~riskstrat.pipelines.evaluate`, :mod:`~riskstrat.pipelines.score`,
:mod:`~riskstrat.pipelines.monitor` and :mod:`~riskstrat.pipelines.demo`. The CLI, notebooks and the
batch job call these; each takes one validated config object.
"""
