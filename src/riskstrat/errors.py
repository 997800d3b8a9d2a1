"""The root of riskstrat's own refusals.

Every error riskstrat raises on purpose (a bad configuration, data that fail validation, a model
the data cannot support, a stale extract) derives from :class:`RiskstratError`. The CLI turns
these, and operating-system errors, into a message and a non-zero exit without a traceback; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["RiskstratError"]


class RiskstratError(Exception):
    """A refusal by riskstrat: the message says what is wrong and what to do."""
