"""Wiring: the steps (pure functions in the stages below) joined with I/O and tracking into whole runs.

One module a run, each function one call a step: :mod:`~riskstrat.pipelines.train`,
:mod:`~riskstrat.pipelines.evaluate`, :mod:`~riskstrat.pipelines.score`,
:mod:`~riskstrat.pipelines.monitor`, :mod:`~riskstrat.pipelines.promote`,
:mod:`~riskstrat.pipelines.imports` and :mod:`~riskstrat.pipelines.demo`; the small commands (synth,
key, validate, features) in :mod:`~riskstrat.pipelines.commands`. The CLI, notebooks and the batch
job call these; each run takes one validated config object. A command imports only its pipeline
module, which re-exports what the command catches or prints with from the layers below.
"""
