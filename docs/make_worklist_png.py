"""Screenshot the worklist (``riskstrat serve``) for the README (docs/worklist.png), on synthetic data only.

    python docs/make_worklist_png.py                                   # a small synthetic month made here
    python docs/make_worklist_png.py --lists riskstrat-output/lists    # after `riskstrat demo`

Serves the newest month under ``--lists`` (or a 3,000-person synthetic month written in the
published format by ``benchmarks/bench_serve.py``'s month builder: seeded risks, no model) from a
throw-away database, records a few statuses, logs a coordinator of the first practice in through
headless Chromium, loads a made-up look-up file in the page (local IDs ``LOC-00001``...: nothing
real) and photographs the page at 1280x800.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from riskstrat.serve.app import ServeSettings, create_app
from riskstrat.serve.auth import add_user
from riskstrat.serve.db import ListRow, Status, StatusEvent
from riskstrat.serve.months import demo_practice

PASSWORD = "synthetic screenshot account"
MARKS = [("contacted", None, "Rang; home visit booked"), ("enrolled", None, None), ("reviewed_mdt", None, None),
         ("not_appropriate", "care_home", None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=Path, help="A lists folder (default: a synthetic month made here).")
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/worklist.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="worklist-png-"))
    lists = args.lists
    if lists is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from bench_serve import build_month

        lists = work / "lists"
        build_month(lists, people=3000, per_practice=1500, list_share=0.066, seed=7)
    app = create_app(ServeSettings(lists_dir=lists, db_url=f"sqlite:///{work / 'worklist.db'}"))
    practice = demo_practice(lists)
    with app.state.db() as db:
        add_user(db, "asha", PASSWORD, role="coordinator", practices=[practice])
        month = db.scalar(ListRow.__table__.select().with_only_columns(ListRow.month).order_by(ListRow.month.desc()))
        people = db.scalars(ListRow.__table__.select().with_only_columns(ListRow.pseudonym).where(
            ListRow.practice_id == practice, ListRow.month == month).order_by(ListRow.rank)).all()
        db.commit()  # ends the read
        with db.begin():
            for (status, reason, note), person in zip(MARKS, people[1::2]):
                db.add(Status(practice_id=practice, pseudonym=person, status=status, reason=reason, note=note,
                              next_review=dt.date(2026, 12, 15) if status != "not_appropriate" else None,
                              updated_by="asha"))
                db.add(StatusEvent(practice_id=practice, pseudonym=person, month=month, status=status, reason=reason,
                                   by="asha"))
    lookup = work / "practice-lookup.csv"
    lookup.write_text("pseudonym,local_id\n" + "".join(f"{p},LOC-{i + 1:05d}\n" for i, p in enumerate(people)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, access_log=False, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"{base}/login")
            page.fill("input[name=username]", "asha")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.goto(f"{base}/p/{practice}")
            page.set_input_files("#lookup-file", str(lookup))
            page.wait_for_function("document.querySelector('#lookup-status').textContent.includes('Look-up read')")
            for person in people[:3]:
                page.check(f"input.pick[value='{person}']")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.should_exit = True
    print(f"{args.out}: practice {practice}, {month}, at {args.width}x{args.height}")


if __name__ == "__main__":
    main()
