"""What the Spark test modules need before they import PySpark."""

from __future__ import annotations

import os
import shutil

import pytest


def require_spark() -> None:
    """Skip the calling test module when PySpark (the ``spark`` extra) or a Java runtime is missing."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install 'riskstrat[spark]'")
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        pytest.skip("no Java runtime (17 or later) for a local Spark session", allow_module_level=True)
