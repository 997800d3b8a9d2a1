"""The month: scores, tiers and groups, the per-practice lists and workbooks, publishing
and reading a published month back."""
