"""The worklist (riskstrat serve): each protection tested against the behaviour it prevents.

Published months are built by hand (the files and manifest `riskstrat score` writes, small): the
server reads them as it reads a real month. scrypt runs with tiny parameters here only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from riskstrat.serve.app import SECURITY_HEADERS, SESSION_COOKIE, ServeSettings, create_app  # noqa: E402
from riskstrat.serve.auth import ScryptParams, add_user  # noqa: E402
from riskstrat.serve.db import AuditRow, ListRow, OptedOut, Status, StatusEvent  # noqa: E402
from riskstrat.serve.months import load_months  # noqa: E402

FAST = ScryptParams(n=2 ** 4, r=8, p=1)
PASSWORD = "correct horse battery staple"
COLUMNS = ["Rank", "Person ID", "Age", "Risk (%)", "Tier", "Priority groups", "Top reasons", "New this month"]

# practice -> [(pseudonym, tier, groups, new)]
MONTH_1 = {"P1": [("aaaa000000000001", "very high", "frequent users", False),
                  ("aaaa000000000002", "high", "care provision 85+", False),
                  ("aaaa000000000003", "high", "", False)],
           "P2": [("bbbb000000000001", "very high", "high-cost individuals", False),
                  ("bbbb000000000002", "high", "", False)]}
HELD = "aaaa000000000003"  # listed in P1's file but held back in the population


def publish(lists_dir: Path, month: str, practices: dict, *, held: frozenset = frozenset(),
            opt_out_file: Path | None = None) -> Path:
    """A published month as `riskstrat score` lays it out: list.csv per practice, population.parquet, manifest."""
    folder = lists_dir / month
    files = {}
    people = []
    for pid, rows in practices.items():
        table = pd.DataFrame([{"Rank": i + 1, "Person ID": p, "Age": 80, "Risk (%)": f"{50 - i}.0", "Tier": tier,
                               "Priority groups": groups, "Top reasons": "much use of services",
                               "New this month": "yes" if new else ""}
                              for i, (p, tier, groups, new) in enumerate(rows)],
                             columns=COLUMNS)
        path = folder / "practices" / pid / "list.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(table.to_csv(index=False).encode("utf-8-sig"))
        files[f"practices/{pid}/list.csv"] = path
        people += [{"person_id": p, "practice_id": pid, "holdout": p in held} for p, *_ in rows]
    pd.DataFrame(people).to_parquet(folder / "population.parquet", index=False)
    files["population.parquet"] = folder / "population.parquet"
    manifest = {"month": month, "as_of": f"{month}-01", "models": {"risk": {"version": "1", "run_id": "r1"}},
                "outcome": {"name": "emergency_admission", "words": "an emergency admission", "horizon_days": 365},
                "config": {"models": {"risk": "risk"}},
                "opt_out_file": ({"path": str(opt_out_file), "sha256": hashlib.sha256(opt_out_file.read_bytes())
                                  .hexdigest()} if opt_out_file else None),
                "files": {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in files.items()}}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def worklist(tmp_path):
    """The worklist over one month, with alice (P1), bob (P2), dana (data team) and ada (admin)."""
    lists = tmp_path / "lists"
    publish(lists, "2026-10", MONTH_1, held=frozenset({HELD}))
    settings = ServeSettings(lists_dir=lists, db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST,
                             lockout_after=3, login_attempts_per_minute=50)
    app = create_app(settings)
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
        add_user(db, "bob", PASSWORD, role="coordinator", practices=["P2"], params=FAST)
        add_user(db, "dana", PASSWORD, role="data_team", params=FAST)
        add_user(db, "ada", PASSWORD, role="admin", params=FAST)
    return app


def login(client: TestClient, username: str, password: str = PASSWORD):
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"csrf": token, "username": username, "password": password},
                       follow_redirects=False)


def csrf_of(client: TestClient, url: str = "/") -> str:
    return re.search(r'<meta name="csrf" content="([^"]+)"', client.get(url).text).group(1)


def as_user(app, username: str) -> TestClient:
    client = TestClient(app)
    assert login(client, username).status_code == 303
    return client


def audit(app, **where) -> list[AuditRow]:
    with app.state.db() as db:
        query = sa.select(AuditRow).order_by(AuditRow.id)
        for name, value in where.items():
            query = query.where(getattr(AuditRow, name) == value)
        return list(db.scalars(query).all())


def set_status(client, practice, pseudonym, **fields):
    data = {"csrf": csrf_of(client, f"/p/{practice}/person/{pseudonym}"), "status": "contacted", **fields}
    return client.post(f"/p/{practice}/person/{pseudonym}/status", data=data, follow_redirects=False)


def test_a_coordinator_sees_only_their_practice_and_the_attempt_is_audited(worklist):
    alice = as_user(worklist, "alice")
    assert alice.get("/p/P1").status_code == 200
    other = "bbbb000000000001"
    token = csrf_of(alice, "/p/P1")
    attempts = [alice.get("/p/P2"), alice.get(f"/p/P2/person/{other}"), alice.get(f"/p/P1/person/{other}"),
                alice.post(f"/p/P2/person/{other}/status", data={"csrf": token, "status": "declined"}),
                alice.post(f"/p/P1/person/{other}/status", data={"csrf": token, "status": "declined"}),
                alice.post("/p/P2/export", data={"csrf": token, "pseudonym": other}),
                alice.post("/p/P1/export", data={"csrf": token, "pseudonym": other})]
    assert [r.status_code for r in attempts] == [404] * 7
    assert all(other not in r.text for r in attempts)
    denied = audit(worklist, username="alice", action="denied")
    assert len(denied) == 7 and {d.practice_id for d in denied} == {"P1", "P2"}
    with worklist.state.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Status)) == 0
    # The list page of P1 holds none of P2's people; the data team sees counts, no person rows.
    assert other not in alice.get("/p/P1").text
    dana = as_user(worklist, "dana")
    assert dana.get("/p/P1").status_code == 404 and "aaaa" not in dana.get("/").text


def test_a_post_without_the_csrf_token_is_refused(worklist):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    assert alice.post(f"/p/P1/person/{person}/status", data={"status": "declined"}).status_code == 403
    assert alice.post(f"/p/P1/person/{person}/status",
                      data={"status": "declined", "csrf": "forged"}).status_code == 403
    assert alice.post("/p/P1/export", data={"pseudonym": person}).status_code == 403
    with worklist.state.db() as db:
        assert db.get(Status, ("P1", person)) is None
    # The login form too (a login CSRF would log the victim into the attacker's account).
    fresh = TestClient(worklist)
    fresh.get("/login")
    assert fresh.post("/login", data={"username": "alice", "password": PASSWORD}).status_code == 403
    assert set_status(alice, "P1", person).status_code == 303


def test_login_rotates_the_session_id(worklist):
    client = TestClient(worklist)
    login(client, "bob")
    planted = client.cookies.get(SESSION_COOKIE)
    assert planted and client.get("/").status_code == 200
    login(client, "alice")  # the cookie known before this login is sent with it
    after = client.cookies.get(SESSION_COOKIE)
    assert after and after != planted
    stale = TestClient(worklist, cookies={SESSION_COOKIE: planted})
    assert stale.get("/p/P2", follow_redirects=False).status_code == 303  # to the login page: the old id is dead


def test_the_session_cookie_is_httponly_and_samesite_strict(worklist):
    response = login(TestClient(worklist), "alice")
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()


def test_a_note_with_a_script_is_escaped(worklist):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    assert set_status(alice, "P1", person, note='<script>alert("x")</script>').status_code == 303
    page = alice.get(f"/p/P1/person/{person}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
    assert len(re.findall(r"<script", page)) == 1  # only worklist.js, by src
    too_long = set_status(alice, "P1", person, note="x" * 501)
    assert too_long.status_code == 422


def test_filters_are_bound_parameters(worklist):
    alice = as_user(worklist, "alice")
    for params in ({"tier": "' OR '1'='1"}, {"group": "%' OR 1=1 --"}, {"status": "x' OR 'a'='a"},
                   {"tier": "high'; DROP TABLE list_rows; --"}, {"month": "2026-10' OR 1=1 --"}):
        response = alice.get("/p/P1", params=params)
        assert response.status_code == 200
        if "month" not in params:
            assert "data-pseudonym=" not in response.text
    assert alice.get("/p/P1", params={"group": "frequent"}).text.count('class="pick"') == 1
    assert alice.get("/p/P1", params={"tier": "high"}).text.count('class="pick"') == 1
    assert alice.get("/p/P1").text.count('class="pick"') == 2  # the table survived
    assert alice.get("/p/P1' OR '1'='1").status_code == 404


def test_repeated_wrong_passwords_lock_the_account(worklist):
    client = TestClient(worklist)
    for _ in range(3):
        assert login(client, "alice", "wrong password!!").status_code in (401, 200)
    refused = login(client, "alice")  # the right password, while locked
    assert refused.status_code == 401 and "locked" in refused.text
    assert SESSION_COOKIE not in client.cookies
    assert [a.action for a in audit(worklist, username="alice")][-2:] == ["login_locked", "login_locked"]


def test_login_attempts_are_rate_limited_per_address(tmp_path):
    lists = tmp_path / "lists"
    publish(lists, "2026-10", MONTH_1)
    app = create_app(ServeSettings(lists_dir=lists, db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST,
                                   login_attempts_per_minute=3))
    client = TestClient(app)
    codes = [login(client, f"nobody{i}", "whatever password").status_code for i in range(5)]
    assert codes[:3] == [401] * 3 and codes[3:] == [429, 429]


def test_security_headers_on_every_response(worklist):
    anonymous = TestClient(worklist)
    alice = as_user(worklist, "alice")
    responses = [anonymous.get("/login"), anonymous.get("/", follow_redirects=False),
                 anonymous.get("/static/worklist.js"), alice.get("/p/P1"), alice.get("/p/P2"), alice.get("/nowhere")]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    page = alice.get("/p/P1").text
    # No inline script, no outside address: everything the page loads comes from the server itself.
    assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", page) and "http" not in page.replace("http-equiv", "")


def test_the_lookup_file_has_no_form_field(worklist):
    page = as_user(worklist, "alice").get("/p/P1").text
    chooser = re.search(r"<input[^>]*id=\"lookup-file\"[^>]*>", page).group(0)
    assert "name=" not in chooser  # a file input without a name is never submitted


def test_a_status_carries_over_to_the_next_month(worklist, tmp_path):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000002"
    assert set_status(alice, "P1", person, status="enrolled", next_review="2026-12-01").status_code == 303
    month_2 = {"P1": [("aaaa000000000009", "very high", "", True), (person, "high", "", False)], "P2": MONTH_1["P2"]}
    publish(tmp_path / "lists", "2026-11", month_2)
    with worklist.state.db() as db:
        assert load_months(db, tmp_path / "lists") == ["2026-10", "2026-11"]
    page = alice.get("/p/P1").text
    assert "worklist for 2026-11" in page
    row = re.search(rf'<tr data-pseudonym="{person}".*?</tr>', page, re.S).group(0)
    assert "Enrolled in case management" in row and "2026-12-01" in row
    assert alice.get("/p/P1", params={"status": "enrolled"}).text.count('class="pick"') == 1
    assert alice.get("/p/P1", params={"new": "yes"}).text.count('class="pick"') == 1
    assert alice.get("/p/P1", params={"due": "2026-12-31"}).text.count('class="pick"') == 1
    history = alice.get(f"/p/P1/person/{person}").text
    assert "2026-10" in history and "2026-11" in history
    # The other practice's coordinator sees none of it.
    bob = as_user(worklist, "bob")
    assert 'class="pick"' not in bob.get("/p/P2", params={"status": "enrolled"}).text
    assert bob.get(f"/p/P1/person/{person}").status_code == 404


def test_not_appropriate_people_are_flagged_or_hidden_with_a_count(worklist):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    assert set_status(alice, "P1", person, status="not_appropriate").status_code == 422  # a reason is required
    assert set_status(alice, "P1", person, status="not_appropriate", reason="palliative").status_code == 303
    assert 'class="not-appropriate' in alice.get("/p/P1").text
    alice.post("/p/P1/settings", data={"csrf": csrf_of(alice, "/p/P1"), "hide_not_appropriate": "yes"})
    page = alice.get("/p/P1").text
    assert f'data-pseudonym="{person}"' not in page and "1 person marked not appropriate is hidden" in page


def test_an_opt_out_deletes_statuses_and_notes_and_hides_the_person(worklist, tmp_path):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    set_status(alice, "P1", person, note="rang, no answer")
    opt_outs = tmp_path / "opt_out.txt"
    opt_outs.write_text(person + "\n", encoding="utf-8")
    month_2 = {"P1": [("aaaa000000000002", "high", "", False)], "P2": MONTH_1["P2"]}
    publish(tmp_path / "lists", "2026-11", month_2, opt_out_file=opt_outs)
    with worklist.state.db() as db:
        load_months(db, tmp_path / "lists")
        assert db.scalar(sa.select(sa.func.count()).select_from(Status).where(Status.pseudonym == person)) == 0
        assert db.scalar(sa.select(sa.func.count()).select_from(StatusEvent)
                         .where(StatusEvent.pseudonym == person)) == 0
        assert db.scalar(sa.select(sa.func.count()).select_from(ListRow).where(ListRow.pseudonym == person)) == 0
        assert db.get(OptedOut, person) is not None
    assert person not in alice.get("/p/P1?month=2026-10").text
    assert alice.get(f"/p/P1/person/{person}").status_code == 404


def test_held_back_people_never_appear(worklist):
    alice = as_user(worklist, "alice")
    assert HELD not in alice.get("/p/P1").text
    assert alice.get(f"/p/P1/person/{HELD}").status_code == 404
    with worklist.state.db() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(ListRow).where(ListRow.pseudonym == HELD)) == 0


def test_views_changes_and_exports_are_audited_without_the_note(worklist):
    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    alice.get("/p/P1")
    set_status(alice, "P1", person, note="secret clinical words")
    assert alice.post("/p/P1/export", data={"csrf": csrf_of(alice, "/p/P1"),
                                            "pseudonym": [person, "aaaa000000000002"]}).status_code == 204
    rows = audit(worklist, username="alice")
    actions = [(r.action, r.practice_id, r.pseudonym) for r in rows]
    assert ("list_view", "P1", None) in actions and ("person_view", "P1", person) in actions
    assert ("status_change", "P1", person) in actions
    assert ("export", "P1", person) in actions and ("export", "P1", "aaaa000000000002") in actions
    assert all("secret" not in (r.detail or "") for r in rows)
    # Append-only in the database itself.
    with worklist.state.engine.begin() as connection, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        connection.execute(sa.text("UPDATE audit SET username = 'x'"))
    with worklist.state.engine.begin() as connection, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        connection.execute(sa.text("DELETE FROM audit"))
    # Only the admin exports it.
    assert alice.get("/admin/audit.csv").status_code == 404
    exported = as_user(worklist, "ada").get("/admin/audit.csv")
    assert exported.status_code == 200 and "status_change" in exported.text and "secret" not in exported.text


def test_the_database_is_sqlite_in_wal_mode(worklist):
    with worklist.state.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"
        # A practice's months and a person's rows are found by index, not by scanning every month's rows.
        plan = connection.exec_driver_sql("EXPLAIN QUERY PLAN SELECT DISTINCT month FROM list_rows "
                                          "WHERE practice_id = 'P1'").all()
        assert "ix_list_rows_practice_month" in str(plan)


def test_users_add_list_remove_from_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from riskstrat.cli import app

    db = f"sqlite:///{tmp_path / 'users.db'}"
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "asha", "--practice", "P1", "--db", db], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    short = runner.invoke(app, ["users", "add", "ben", "--practice", "P1", "--db", db], input="short\n")
    assert short.exit_code == 2 and "shorter than 12" in short.output
    no_practice = runner.invoke(app, ["users", "add", "cy", "--db", db], input=PASSWORD + "\n")
    assert no_practice.exit_code == 2 and "--practice" in no_practice.output
    listed = runner.invoke(app, ["users", "list", "--db", db])
    assert listed.output.split() == ["asha", "coordinator", "P1"]
    engine = sa.create_engine(db)
    with engine.connect() as connection:  # scrypt with its salt and (default) parameters, never the password
        stored = connection.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert runner.invoke(app, ["users", "remove", "asha", "--db", db]).exit_code == 0
    assert runner.invoke(app, ["users", "list", "--db", db]).output.strip() == ""
    engine.dispose()


def test_a_backup_taken_while_serving_restores_the_old_state(worklist, tmp_path):
    """Backed up live (the sqlite3 backup API, and the sqlite3 command's .backup the README gives),
    changed, restored: the statuses, notes and audit are the backup's again."""
    import shutil
    import sqlite3
    import subprocess

    db_file, person = tmp_path / "w.db", "aaaa000000000001"
    alice = as_user(worklist, "alice")
    assert set_status(alice, "P1", person, status="contacted", note="first call").status_code == 303
    with sqlite3.connect(db_file) as live, sqlite3.connect(tmp_path / "api-backup.db") as copy:
        live.backup(copy)  # while the server's engine holds the database open (WAL)
    cli = shutil.which("sqlite3")
    if cli:
        subprocess.run([cli, str(db_file), f".backup '{tmp_path / 'cli-backup.db'}'"], check=True)
    audited = len(audit(worklist))
    assert set_status(alice, "P1", person, status="declined", note="second call").status_code == 303
    assert set_status(alice, "P1", "aaaa000000000002", status="enrolled").status_code == 303
    worklist.state.engine.dispose()  # the server stopped before a restore

    def restored_state() -> tuple:
        app = create_app(ServeSettings(lists_dir=tmp_path / "lists", db_url=f"sqlite:///{db_file}", scrypt=FAST))
        with app.state.db() as db:
            statuses = [(s.pseudonym, s.status, s.note) for s in db.scalars(sa.select(Status)).all()]
            n_audit = db.scalar(sa.select(sa.func.count()).select_from(AuditRow))
        page = as_user(app, "alice").get(f"/p/P1/person/{person}").text
        app.state.engine.dispose()
        return statuses, n_audit, "first call" in page and "Contacted" in page

    with sqlite3.connect(tmp_path / "api-backup.db") as copy, sqlite3.connect(db_file) as live:
        copy.backup(live)
    assert restored_state() == ([(person, "contacted", "first call")], audited, True)
    if cli:
        app = create_app(ServeSettings(lists_dir=tmp_path / "lists", db_url=f"sqlite:///{db_file}", scrypt=FAST))
        assert set_status(as_user(app, "alice"), "P1", person, status="declined").status_code == 303
        app.state.engine.dispose()
        subprocess.run([cli, str(db_file), f".restore '{tmp_path / 'cli-backup.db'}'"], check=True)
        statuses, n_audit, shown = restored_state()
        assert statuses == [(person, "contacted", "first call")] and n_audit == audited and shown


def test_behind_a_trusted_proxy_each_client_address_has_its_own_login_limit(tmp_path, monkeypatch):
    """uvicorn takes the client's address from X-Forwarded-For only from a proxy it trusts
    (--forwarded-allow-ips): untrusted, everyone behind the proxy is one address with one limit."""
    import uvicorn
    from typer.testing import CliRunner

    from riskstrat.cli import app as cli
    from riskstrat.serve import app as serve_app

    lists = tmp_path / "lists"
    publish(lists, "2026-10", MONTH_1)
    served = {}

    def fake_run(app, **options):  # what uvicorn.run would serve, without a socket
        config = uvicorn.Config(app, **options)
        config.load()
        served["app"] = config.loaded_app

    monkeypatch.setattr(uvicorn, "run", fake_run)
    app = create_app(ServeSettings(lists_dir=lists, db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST,
                                   login_attempts_per_minute=2))

    def codes(forwarded_allow_ips):
        serve_app.run_server(app, host="127.0.0.1", port=0, forwarded_allow_ips=forwarded_allow_ips)
        out = []
        for address in ("10.1.0.1", "10.1.0.1", "10.1.0.2", "10.1.0.3"):
            client = TestClient(served["app"], headers={"X-Forwarded-For": address})
            out.append(login(client, "nobody", "whatever password").status_code)
        return out

    assert codes("testclient") == [401, 401, 401, 401]  # the proxy (TestClient's address) trusted
    assert codes(None)[2:] == [429, 429]  # not trusted: one shared limit (a new app would reset it; this one ran on)
    # The command line passes the option through.
    seen = {}
    monkeypatch.setattr(serve_app, "run_server", lambda application, **options: seen.update(options))
    result = CliRunner().invoke(cli, ["serve", "--lists", str(lists), "--db", f"sqlite:///{tmp_path / 'c.db'}",
                                      "--forwarded-allow-ips", "10.0.0.5,10.0.0.6"])
    assert result.exit_code == 0, result.output
    assert seen["forwarded_allow_ips"] == "10.0.0.5,10.0.0.6"


def test_a_status_change_that_fails_midway_writes_nothing(worklist, monkeypatch):
    """The status, its history row and its audit row are one transaction: a failure at the audit row
    (the last write) leaves no status and no history."""
    from riskstrat.serve import app as serve_app

    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    token = csrf_of(alice, f"/p/P1/person/{person}")
    real_audit = serve_app._audit

    def failing_audit(db, account, action, *args, **kwargs):
        real_audit(db, account, action, *args, **kwargs)
        if action == "status_change":
            db.flush()  # the status, the history row and the audit row are in the transaction now
            raise RuntimeError("the disk failed")

    monkeypatch.setattr(serve_app, "_audit", failing_audit)
    crashing = TestClient(worklist, raise_server_exceptions=False, cookies=dict(alice.cookies))
    response = crashing.post(f"/p/P1/person/{person}/status",
                             data={"csrf": token, "status": "contacted", "note": "rang"}, follow_redirects=False)
    assert response.status_code == 500
    with worklist.state.db() as db:
        assert db.get(Status, ("P1", person)) is None
        assert db.scalar(sa.select(sa.func.count()).select_from(StatusEvent)) == 0
    assert audit(worklist, action="status_change") == []
    monkeypatch.setattr(serve_app, "_audit", real_audit)
    assert set_status(alice, "P1", person).status_code == 303  # the database is usable: nothing left locked


@pytest.mark.slow
def test_a_server_killed_mid_requests_keeps_every_committed_status(tmp_path):
    """The server in its own process, killed (SIGKILL) while coordinators record statuses: after a
    restart every status it confirmed is there, each with its history and audit row, and SQLite's
    integrity check passes."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading
    import time

    import httpx

    lists, db_file = tmp_path / "lists", tmp_path / "w.db"
    publish(lists, "2026-10", MONTH_1)
    settings = dict(lists_dir=lists, db_url=f"sqlite:///{db_file}", scrypt=FAST)
    app = create_app(ServeSettings(**settings))
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
    app.state.engine.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = ("import sys; from pathlib import Path; from riskstrat.serve.app import ServeSettings, create_app, "
              "run_server; from riskstrat.serve.auth import ScryptParams; "
              f"app = create_app(ServeSettings(lists_dir=Path(sys.argv[1]), db_url=sys.argv[2], "
              f"scrypt=ScryptParams(n=16, r=8, p=1), secret_key='test')); "
              f"run_server(app, host='127.0.0.1', port={port})")
    server = subprocess.Popen([sys.executable, "-c", script, str(lists), settings["db_url"]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(f"{base}/login", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        client = httpx.Client(base_url=base, timeout=5)
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert client.post("/login", data={"csrf": token, "username": "alice", "password": PASSWORD}).status_code \
            in (200, 303)
        csrf = re.search(r'<meta name="csrf" content="([^"]+)"', client.get("/").text).group(1)
        confirmed, sent, people = [], [], ["aaaa000000000001", "aaaa000000000002"]

        def record(i: int) -> None:
            person = people[i % 2]
            sent.append((person, f"call {i}"))
            try:
                response = client.post(f"/p/P1/person/{person}/status",
                                       data={"csrf": csrf, "status": "contacted", "note": f"call {i}"})
                if response.status_code in (200, 303):
                    confirmed.append((person, f"call {i}"))
            except httpx.TransportError:
                pass  # the server died under this request

        record(0), record(1)
        threads = [threading.Thread(target=lambda k=k: [record(k * 1000 + j) for j in range(50)]) for k in range(1, 5)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        server.send_signal(signal.SIGKILL)
        for t in threads:
            t.join(10)
    finally:
        server.kill()
        server.wait(10)
    assert len(confirmed) >= 2
    with sqlite3_connect(db_file) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    app = create_app(ServeSettings(**settings))
    with app.state.db() as db:
        statuses = {s.pseudonym: s.note for s in db.scalars(sa.select(Status)).all()}
        events = db.scalar(sa.select(sa.func.count()).select_from(StatusEvent))
        changes = db.scalar(sa.select(sa.func.count()).select_from(AuditRow).where(AuditRow.action == "status_change"))
    app.state.engine.dispose()
    assert events == changes >= len(confirmed)  # no change without its history or its audit row
    assert len(confirmed) < 202  # killed mid-burst, not after it
    for person in people:  # a note the server confirmed, or the one in flight when it died
        assert statuses[person] in {note for p, note in sent if p == person}


def sqlite3_connect(path):
    import contextlib
    import sqlite3

    return contextlib.closing(sqlite3.connect(path))


def test_logout_ends_the_session_on_the_server(worklist):
    alice = as_user(worklist, "alice")
    cookie = alice.cookies.get(SESSION_COOKIE)
    assert alice.post("/logout", data={"csrf": csrf_of(alice)}, follow_redirects=False).status_code == 303
    replayed = TestClient(worklist, cookies={SESSION_COOKIE: cookie})  # the cookie kept by someone after logout
    assert replayed.get("/p/P1", follow_redirects=False).status_code == 303


def test_sessions_expire(worklist, monkeypatch):
    from riskstrat.serve import auth

    alice = as_user(worklist, "alice")
    assert alice.get("/p/P1").status_code == 200
    later = auth.utcnow() + dt.timedelta(hours=8, minutes=1)  # the default session lasts 8 hours
    monkeypatch.setattr(auth, "utcnow", lambda: later)
    assert alice.get("/p/P1", follow_redirects=False).status_code == 303


def test_cookies_are_secure_when_asked(tmp_path):
    lists = tmp_path / "lists"
    publish(lists, "2026-10", MONTH_1)
    app = create_app(ServeSettings(lists_dir=lists, db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST,
                                   secure_cookies=True))
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
    client = TestClient(app, base_url="https://testserver")
    form_cookie = client.get("/login").headers["set-cookie"]
    response = login(client, "alice")
    session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE))
    assert "; secure" in form_cookie.lower() and "; secure" in session_cookie.lower()


def test_removing_a_user_ends_their_sessions(worklist, tmp_path):
    from typer.testing import CliRunner

    from riskstrat.cli import app as cli

    alice = as_user(worklist, "alice")
    assert alice.get("/p/P1").status_code == 200
    removed = CliRunner().invoke(cli, ["users", "remove", "alice", "--db", f"sqlite:///{tmp_path / 'w.db'}"])
    assert removed.exit_code == 0, removed.output
    assert alice.get("/p/P1", follow_redirects=False).status_code == 303


def test_the_data_team_sees_person_rows_only_for_a_practice_given_to_them(worklist):
    dana = as_user(worklist, "dana")
    assert dana.get("/p/P1").status_code == 404
    home = dana.get("/").text
    assert "P1" in home and "aaaa" not in home  # counts per practice, no person
    with worklist.state.db() as db:
        add_user(db, "dana", PASSWORD, role="data_team", practices=["P1"], params=FAST, replace=True)
    dana = as_user(worklist, "dana")
    assert "aaaa000000000001" in dana.get("/p/P1").text and dana.get("/p/P2").status_code == 404


def test_notes_past_their_retention_are_cleared_while_serving(worklist, monkeypatch):
    """Notes older than the retention are cleared at start-up and while the server runs (hourly),
    not only when it restarts; the status stays."""
    from riskstrat.serve import app as serve_app

    alice = as_user(worklist, "alice")
    person = "aaaa000000000001"
    set_status(alice, "P1", person, note="rang, no answer")
    with worklist.state.engine.begin() as connection:
        connection.execute(sa.update(Status).values(note_at=dt.datetime(2020, 1, 1)))  # written long ago
    assert "rang, no answer" in alice.get(f"/p/P1/person/{person}").text  # within the hour: not checked yet
    clock = serve_app.time.monotonic() + 3601
    monkeypatch.setattr(serve_app.time, "monotonic", lambda: clock)
    page = alice.get(f"/p/P1/person/{person}").text
    assert "rang, no answer" not in page and "Contacted" in page


def test_the_single_sign_on_header_is_trusted_only_when_configured(worklist, tmp_path):
    header = {"X-Remote-User": "alice"}
    assert TestClient(worklist).get("/sso", headers=header, follow_redirects=False).status_code == 404
    app = create_app(ServeSettings(lists_dir=tmp_path / "lists", db_url=f"sqlite:///{tmp_path / 'w.db'}",
                                   scrypt=FAST, sso_header="X-Remote-User"))
    client = TestClient(app)
    assert client.get("/sso", headers=header, follow_redirects=False).status_code == 303
    assert client.get("/p/P1").status_code == 200 and client.get("/p/P2").status_code == 404
    stranger = TestClient(app).get("/sso", headers={"X-Remote-User": "mallory"}, follow_redirects=False)
    assert stranger.status_code == 403 and SESSION_COOKIE not in stranger.cookies
    assert [a.action for a in audit(app, username="mallory")] == ["sso_unknown"]


def _add_recipe(folder: Path, practice: str, rows: list) -> dict:
    """A workbook recipe for ``practice``'s list (as `riskstrat score` publishes one with `lists.workbooks: none`)."""
    from riskstrat.scoring.lists import RECIPE_VERSION, WORKBOOK_RECIPE

    records = [[i + 1, p, 80, 50.0 - i, tier, groups, "much use of services", "yes" if new else ""]
               for i, (p, tier, groups, new) in enumerate(rows)]
    recipe = {"recipe_version": RECIPE_VERSION, "title": f"Case-finding list: practice {practice}, October 2026",
              "notes": ["About these people."], "created": "2026-10-01T00:00:00", "group_names": {},
              "columns": COLUMNS, "cells": [list(column) for column in zip(*records)]}
    path = folder / "practices" / practice / WORKBOOK_RECIPE
    path.write_text(json.dumps(recipe), encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][f"practices/{practice}/{WORKBOOK_RECIPE}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return recipe


def test_the_workbook_is_served_to_the_practice_only_without_held_back_people_and_audited(tmp_path):
    import io

    import openpyxl

    from riskstrat.scoring.lists import recipe_workbook

    lists_dir = tmp_path / "lists"
    folder = publish(lists_dir, "2026-10", MONTH_1, held=frozenset({HELD}))
    recipe = _add_recipe(folder, "P1", MONTH_1["P1"])
    app = create_app(ServeSettings(lists_dir=lists_dir, db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST))
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
        add_user(db, "bob", PASSWORD, role="coordinator", practices=["P2"], params=FAST)
    alice, bob = as_user(app, "alice"), as_user(app, "bob")
    assert 'href="/p/P1/workbook?month=2026-10"' in alice.get("/p/P1").text
    got = alice.get("/p/P1/workbook?month=2026-10")
    assert got.status_code == 200 and got.headers["content-type"].startswith("application/vnd.openxmlformats")
    shown = {p for p, *_ in MONTH_1["P1"] if p != HELD}
    assert got.content == recipe_workbook(recipe, people=shown)  # the run's bytes, less the held-back person
    sheet = openpyxl.load_workbook(io.BytesIO(got.content))["List"]
    assert [sheet.cell(row=r, column=2).value for r in range(2, sheet.max_row + 1)] == sorted(shown)
    # Another practice's coordinator gets the same 404 as for a practice that does not exist, audited.
    assert bob.get("/p/P1/workbook?month=2026-10").status_code == 404
    assert alice.get("/p/P1/workbook?month=2026-09").status_code == 404
    assert [(r.username, r.action, r.practice_id) for r in audit(app) if "workbook" in r.action
            or r.action == "denied"] == [("alice", "workbook", "P1"), ("bob", "denied", "P1")]
    # P2 has no recipe and no workbook in this month: refused, saying so, audited.
    refused = bob.get("/p/P2/workbook?month=2026-10")
    assert refused.status_code == 409 and "cannot be given" in refused.text and str(tmp_path) not in refused.text
    assert "published without one by an older riskstrat" in refused.text  # the refusal's own reason, not a guess
    assert audit(app, username="bob", action="workbook_refused")


def test_riskstrat_workbook_writes_a_practices_workbook_from_a_published_month(tmp_path):
    from typer.testing import CliRunner

    from riskstrat.cli import app
    from riskstrat.scoring.lists import recipe_workbook

    folder = publish(tmp_path / "lists", "2026-10", MONTH_1)
    recipe = _add_recipe(folder, "P1", MONTH_1["P1"])
    target = tmp_path / "P1.xlsx"
    args = ["workbook", "--lists", str(tmp_path / "lists"), "--month", "2026-10", "--practice", "P1", "--out",
            str(target)]
    runner = CliRunner()
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert target.read_bytes() == recipe_workbook(recipe)  # everyone on the list, as the run would have written
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists already" in again.output
    planted = tmp_path / "planted.xlsx"  # a link planted at --out is refused, not followed to its target
    planted.symlink_to(tmp_path / "elsewhere.xlsx")
    linked = runner.invoke(app, [*args[:-1], str(planted)])
    assert linked.exit_code == 2 and "exists already" in linked.output and not (tmp_path / "elsewhere.xlsx").exists()
    for month, practice, words in (("2026-13", "P1", "not a published month"), ("2026-10", "P9", "no list for")):
        refused = runner.invoke(app, [*args[:4], month, "--practice", practice, "--out", str(tmp_path / "x.xlsx")])
        assert refused.exit_code == 2 and words in refused.output, refused.output
