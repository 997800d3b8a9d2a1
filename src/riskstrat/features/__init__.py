"""Features as of an index date: the spec (as data), the clinical definitions and their words, the top reasons
from SHAP values (reasons: the lists and the served model share them), the generic covariates, and
the engines that compute them (pandas, the reference; DuckDB; Spark)."""
