"""`riskstrat serve`: the practices' case-finding worklist, a small web application over published months.

The server reads the published months (never rewrites them), keeps pseudonyms, statuses, notes and
an append-only audit in its own database (SQLite in WAL mode by default, PostgreSQL by URL, the schema
migrated by Alembic at start-up), and never sees a person's local ID or NHS number: the practice's
look-up file is read and joined in the user's browser (``templates/serve/worklist.js``).

- :mod:`riskstrat.serve.db`: the tables, the engine and the migrations;
- :mod:`riskstrat.serve.auth`: password hashing (scrypt), accounts, sessions, lockout;
- :mod:`riskstrat.serve.months`: published months loaded (verified), opt-outs and hold-outs applied;
- :mod:`riskstrat.serve.app`: the FastAPI application (routes, CSRF, security headers, audit).
"""
