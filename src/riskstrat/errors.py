"""The root of riskstrat's own refusals.

Every error riskstrat raises on purpose (a bad configuration, data that fail validation, a model
the data cannot support, a stale extract) derives from :class:`RiskstratError`. The CLI turns
these into a message and exit status 2, and operating-system errors into a message naming the file
and status 1, without a traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["InvalidInputError", "RiskstratError"]


class RiskstratError(Exception):
    """A refusal by riskstrat: the message says what is wrong and what to do."""


class InvalidInputError(RiskstratError, ValueError):
    """An argument, option or setting a person gave that cannot be used (also a ``ValueError``, so
    library callers that catch ``ValueError`` for bad arguments keep working)."""
