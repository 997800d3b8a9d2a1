"""`riskstrat serve` (the practices' worklist) and `riskstrat users add|remove|list` (its accounts)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from riskstrat.cli.app import App, app, out

DEFAULT_DB = "sqlite:///worklist.db"
users = App(help="The worklist's accounts: coordinators (their practices' people), the data team (counts; person "
                 "rows only for practices given to them) and admins (the audit).\n\n"
                 "Example: riskstrat users add asha --practice P81000")
app.add_typer(users, name="users")


def _db_option():
    return typer.Option(DEFAULT_DB, "--db", help="The worklist's database: sqlite:///PATH (default, WAL mode) or a "
                                                  "postgresql+psycopg:// URL. Migrated to the newest schema first.")


@app.command()
def serve(
    lists: Path = typer.Option(..., "--lists", help="The folder of published months (`riskstrat score`'s lists "
                                                     "folder; for the demo riskstrat-output/lists)."),
    db: str = _db_option(),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (put a TLS proxy in front for a network)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    opt_out: list[Path] = typer.Option([], "--opt-out", help="An opt-out file (as `riskstrat score` reads): those "
                                                              "people never appear and their statuses and notes "
                                                              "are deleted. Repeatable."),
    secure_cookies: bool = typer.Option(False, "--secure-cookies", help="Mark cookies Secure: set it behind TLS."),
    sso_header: str | None = typer.Option(None, "--sso-header", help="Trust this request header (set by your "
                                                                      "single sign-on proxy, which must strip it "
                                                                      "from clients) as the user name."),
    forwarded_allow_ips: str | None = typer.Option(
        None, "--forwarded-allow-ips", help="The reverse proxy's address(es), comma-separated, whose "
                                            "X-Forwarded-For gives the client's address (default 127.0.0.1). "
                                            "Logins are rate-limited per client address: without it, everyone "
                                            "behind a proxy on another host shares one limit."),
    note_retention_days: int = typer.Option(365, help="Clear notes older than this many days (statuses stay)."),
    demo: bool = typer.Option(False, "--demo", help="Synthetic demo months only: add an account demo-coordinator "
                                                     "for the first practice, with a new password printed here."),
) -> None:
    """Serve the case-finding worklist over the published months in --lists.

    Each practice's coordinators see their own people, record a status, a short note and a next-review
    date that carry over to later months, and re-identify people in their own browser from the
    practice's look-up file, which never reaches the server. Every view, change and export is
    audited. The published files are read, never changed.

    Example: riskstrat serve --lists riskstrat-output/lists --demo
    """
    import secrets

    from riskstrat.serve.app import ServeSettings, create_app, run_server
    from riskstrat.serve.auth import add_user
    from riskstrat.serve.months import demo_practice, synthetic_only

    settings = ServeSettings(lists_dir=lists, db_url=db, secure_cookies=secure_cookies, sso_header=sso_header,
                             note_retention_days=note_retention_days, opt_out_files=tuple(opt_out),
                             secret_key=os.environ.get("RISKSTRAT_SERVE_SECRET") or secrets.token_urlsafe(32))
    application = create_app(settings)
    if demo:
        if not synthetic_only(lists):
            from riskstrat.errors import RiskstratError

            raise RiskstratError(f"--demo is for the synthetic demo only, and {lists} holds a month scored on other "
                                 f"data: add accounts with `riskstrat users add` instead")
        practice, password = demo_practice(lists), secrets.token_urlsafe(12)
        with application.state.db() as session:
            add_user(session, "demo-coordinator", password, role="coordinator", practices=[practice], replace=True)
        out.print(f"Demo account for practice {practice} (synthetic data): user demo-coordinator, password "
                  f"{password}", highlight=False)
    out.print(f"Worklist at http://{host}:{port}/ (Ctrl+C stops it)", highlight=False)
    run_server(application, host=host, port=port, forwarded_allow_ips=forwarded_allow_ips)


def _password(prompt: bool) -> str:
    if not prompt or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password (12 characters or more)", hide_input=True, confirmation_prompt=True)


@users.command("add")
def users_add(
    username: str = typer.Argument(..., help="The user name (letters, digits, _ . @ -)."),
    role: str = typer.Option("coordinator", help="coordinator, data_team or admin."),
    practice: list[str] = typer.Option([], "--practice", "-p", help="A practice whose people the user sees "
                                                                    "(repeatable; coordinators need one)."),
    db: str = _db_option(),
    replace: bool = typer.Option(False, help="Reset an existing account (password, role, practices)."),
) -> None:
    """Add an account; the password is asked for (or read from standard input when piped).

    Example: riskstrat users add asha --practice P81000
    """
    from riskstrat.serve.auth import add_user
    from riskstrat.serve.db import open_database

    with open_database(db) as session:
        add_user(session, username, _password(True), role=role, practices=practice, replace=replace)
    out.print(f"added {username} ({role}" + (f"; practices {', '.join(practice)}" if practice else "") + ")")


@users.command("remove")
def users_remove(username: str = typer.Argument(...), db: str = _db_option()) -> None:
    """Remove an account and its sessions (its audit rows stay).

    Example: riskstrat users remove asha
    """
    from riskstrat.serve.auth import remove_user
    from riskstrat.serve.db import open_database

    with open_database(db) as session:
        remove_user(session, username)
    out.print(f"removed {username}")


@users.command("list")
def users_list(db: str = _db_option()) -> None:
    """List the accounts: name, role, practices, whether locked now.

    Example: riskstrat users list --db sqlite:///worklist.db
    """
    from riskstrat.serve.auth import list_users
    from riskstrat.serve.db import open_database

    with open_database(db) as session:
        for name, role, practices, locked in list_users(session):
            out.print(f"{name}\t{role}\t{','.join(practices) or '-'}" + ("\tlocked" if locked else ""),
                      highlight=False)
