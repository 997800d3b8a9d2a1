"""The worklist in Chromium (Playwright against the system chromium).

The short case (in the default run, a few seconds): the look-up is joined in the browser, the export
is built there, and no request carries the look-up's local IDs. The whole journey (slow: run with
``pytest -m slow tests/test_serve_browser.py``): log in, open the practice's list, load the look-up,
record a status with a note, export, log out; the next month's list shows the status; the second
practice's coordinator sees none of it; and no request of the whole journey carries the look-up.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("playwright")
uvicorn = pytest.importorskip("uvicorn")

from test_serve import FAST, MONTH_1, PASSWORD, publish  # noqa: E402

from riskstrat.serve.app import ServeSettings, create_app  # noqa: E402
from riskstrat.serve.auth import add_user  # noqa: E402
from riskstrat.serve.months import load_months  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs the system Chromium")
LOOKUP = "pseudonym,local_id\naaaa000000000001,LOCAL-111\naaaa000000000002,LOCAL-222\n"


class Served(str):
    """The server's address (a str), with the application it serves."""

    def __new__(cls, url: str, app):
        served = super().__new__(cls, url)
        served.app = app
        return served


@pytest.fixture
def server(tmp_path):
    """The worklist under uvicorn on a free port over one month; alice coordinates P1, bob P2."""
    publish(tmp_path / "lists", "2026-10", MONTH_1)
    app = create_app(ServeSettings(lists_dir=tmp_path / "lists", db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST))
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
        add_user(db, "bob", PASSWORD, role="coordinator", practices=["P2"], params=FAST)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(100):
        if running.started:
            break
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", app)
    running.should_exit = True
    thread.join(5)


@pytest.fixture
def browser_page():
    """A Chromium page that accepts downloads, with every request and console error it makes recorded."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.sent, page.errors = [], []
        page.on("request", lambda r: page.sent.append(f"{r.url} {r.post_data or ''} {r.headers}"))
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        yield page
        browser.close()


def log_in(page, server: str, username: str) -> None:
    page.goto(f"{server}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/")


def load_lookup(page, path) -> None:
    page.set_input_files("#lookup-file", str(path))
    page.wait_for_function("document.querySelector('#lookup-status').textContent.includes('Look-up read')")


def row_text(page, pseudonym: str) -> str:
    return page.inner_text(f"tr[data-pseudonym='{pseudonym}']")


def test_the_lookup_stays_in_the_browser(server, browser_page, tmp_path):
    page = browser_page
    lookup = tmp_path / "lookup.csv"
    lookup.write_text(LOOKUP)
    log_in(page, server, "alice")
    page.goto(f"{server}/p/P1")
    load_lookup(page, lookup)
    assert [c.inner_text() for c in page.query_selector_all("td.local-id")][:2] == ["LOCAL-111", "LOCAL-222"]
    page.check("input.pick[value=aaaa000000000001]")
    with page.expect_download() as download:
        page.click("#export")
    assert open(download.value.path(), encoding="utf-8").read().split() == ["local_id", "LOCAL-111"]
    assert not any("LOCAL-" in s or "lookup.csv" in s for s in page.sent)
    assert any(s.startswith(f"{server}/p/P1/export") and "aaaa000000000001" in s for s in page.sent)  # audited
    assert page.errors == []


@pytest.mark.slow
def test_the_whole_journey_of_two_months_and_two_practices(server, browser_page, tmp_path):
    page, lists = browser_page, tmp_path / "lists"
    person, other = "aaaa000000000002", "aaaa000000000001"
    lookup = tmp_path / "practice-P1-lookup.csv"
    lookup.write_text(LOOKUP)

    # Month 1: alice logs in, opens P1's list from the start page and reads the look-up.
    log_in(page, server, "alice")
    page.click("a[href='/p/P1']")
    assert "worklist for 2026-10" in page.inner_text("h1")
    assert page.locator("tr[data-pseudonym]").count() == 3 and "bbbb" not in page.content()
    load_lookup(page, lookup)
    assert page.inner_text(f"tr[data-pseudonym='{person}'] td.local-id") == "LOCAL-222"

    # A status with a note and a next review, through the person's page.
    page.click(f"a[href='/p/P1/person/{person}']")
    page.select_option("select[name=status]", "contacted")
    page.fill("textarea[name=note]", "Rang on Tuesday; <b>call back</b> after clinic")
    page.fill("input[name=next_review]", "2026-12-01")
    page.click("form.status-form button[type=submit]")
    page.wait_for_url(f"{server}/p/P1/person/{person}")
    assert "Rang on Tuesday; <b>call back</b> after clinic" in page.inner_text("p.note")  # shown as text
    assert "Contacted" in page.inner_text("section.status strong")

    # Back on the list: the status shows; the look-up is read again (a reload forgets it) and two exported.
    page.click("text=Back to the worklist")
    assert "Contacted" in row_text(page, person) and "2026-12-01" in row_text(page, person)
    load_lookup(page, lookup)
    page.check(f"input.pick[value={person}]")
    page.check(f"input.pick[value={other}]")
    with page.expect_download() as download:
        page.click("#export")
    exported = download.value
    assert exported.suggested_filename == "practice-P1-selected-local-ids.csv"
    assert open(exported.path(), encoding="utf-8", newline="").read() == "local_id\r\nLOCAL-111\r\nLOCAL-222\r\n"
    assert "Exported 2 local IDs" in page.inner_text("#lookup-status")

    # Log out: the session is gone, the list is behind the login page again.
    page.click("header form button[type=submit]")
    page.wait_for_url(f"{server}/login")
    page.goto(f"{server}/p/P1")
    assert page.url == f"{server}/login"

    # Month 2 is published (the files and manifest `riskstrat score` writes) and loaded by the server.
    month_2 = {"P1": [("aaaa000000000009", "very high", "", True), (person, "high", "", False)],
               "P2": MONTH_1["P2"]}
    publish(lists, "2026-11", month_2)
    with server.app.state.db() as db:
        assert load_months(db, lists) == ["2026-10", "2026-11"]
    log_in(page, server, "alice")
    page.goto(f"{server}/p/P1")
    assert "worklist for 2026-11" in page.inner_text("h1")
    assert "Contacted" in row_text(page, person) and "2026-12-01" in row_text(page, person)
    assert "To review" in row_text(page, "aaaa000000000009") and "new" in row_text(page, "aaaa000000000009")
    page.select_option("select[name=status]", "contacted")
    page.click("form.filters button[type=submit]")
    assert [r.get_attribute("data-pseudonym") for r in page.query_selector_all("tr[data-pseudonym]")] == [person]
    page.goto(f"{server}/p/P1/person/{person}")
    history = page.inner_text("main")
    assert "2026-10" in history and "2026-11" in history and "call back" in history
    page.click("header form button[type=submit]")
    page.wait_for_url(f"{server}/login")

    # Bob, P2's coordinator: his start page and list hold none of it; P1's pages are 404s.
    log_in(page, server, "bob")
    assert "P1" not in page.inner_text("main")
    page.goto(f"{server}/p/P2")
    seen = page.content()
    assert "bbbb000000000001" in seen and "aaaa" not in seen and "call back" not in seen
    assert "Contacted" not in page.inner_text("table.worklist")
    for url in ("/p/P1", f"/p/P1/person/{person}", "/p/P1?month=2026-10", f"/p/P2/person/{person}"):
        response = page.goto(f"{server}{url}")
        assert response.status == 404 and "call back" not in page.content() and person not in page.content()

    # No request of the whole journey carried a local ID or the look-up file (its name or its content).
    assert len(page.sent) > 20
    assert not any("LOCAL-" in s or "lookup.csv" in s or "local_id" in s for s in page.sent)
    assert page.errors == [] or all("404" in e for e in page.errors)
