"""riskstrat: open population health risk stratification from linked person-level records."""

__version__ = "0.1.0"
