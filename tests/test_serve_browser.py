"""The worklist in Chromium (Playwright against the system chromium): the look-up is joined in the
browser, the export is built there, and no request carries the look-up's local IDs. Slow: run with
``pytest -m slow tests/test_serve_browser.py``. (The full journey, next month and the second
practice's user, is left to grow here.)"""

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

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs the system Chromium")]


@pytest.fixture
def server(tmp_path):
    publish(tmp_path / "lists", "2026-10", MONTH_1)
    app = create_app(ServeSettings(lists_dir=tmp_path / "lists", db_url=f"sqlite:///{tmp_path / 'w.db'}", scrypt=FAST))
    with app.state.db() as db:
        add_user(db, "alice", PASSWORD, role="coordinator", practices=["P1"], params=FAST)
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
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(5)


def test_the_lookup_stays_in_the_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    lookup = tmp_path / "lookup.csv"
    lookup.write_text("pseudonym,local_id\naaaa000000000001,LOCAL-111\naaaa000000000002,LOCAL-222\n")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        sent, errors = [], []
        page.on("request", lambda r: sent.append(f"{r.url} {r.post_data or ''}"))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server}/login")
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{server}/p/P1")
        page.set_input_files("#lookup-file", str(lookup))
        page.wait_for_function("document.querySelector('#lookup-status').textContent.includes('Look-up read')")
        assert [c.inner_text() for c in page.query_selector_all("td.local-id")][:2] == ["LOCAL-111", "LOCAL-222"]
        page.check("input.pick[value=aaaa000000000001]")
        with page.expect_download() as download:
            page.click("#export")
        assert open(download.value.path(), encoding="utf-8").read().split() == ["local_id", "LOCAL-111"]
        browser.close()
    assert not any("LOCAL-" in s or "lookup.csv" in s for s in sent)
    assert any(s.startswith(f"{server}/p/P1/export") and "aaaa000000000001" in s for s in sent)  # audited
    assert errors == []
