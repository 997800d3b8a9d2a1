"""The built-in synthetic linked population (the embedded default data)."""

from riskstrat.data.synth.generator import (
    SynthResult,
    default_truth_dates,
    generate_population,
    high_cost_chance,
    high_cost_probability,
    write_population,
)

__all__ = ["SynthResult", "default_truth_dates", "generate_population", "high_cost_chance",
           "high_cost_probability", "write_population"]
