"""The worklist's web application (FastAPI, server-rendered through :func:`riskstrat.templates.render`).

Every response carries the security headers (:data:`SECURITY_HEADERS`: CSP ``default-src 'self'``
with no inline script, ``frame-ancestors 'none'``, no referrer, ``nosniff``). Every POST checks the
CSRF token of the session (or, for the login form, a signed double-submit cookie). A practice the
account may not see is a 404, exactly as for one that does not exist, and the attempt is audited.
Every list view, person view, status change and export writes an audit row (who, when, practice,
pseudonym, action; never the note). The look-up file that re-identifies people is read in the browser
(``worklist.js``) and never sent: no form has a field for it.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from riskstrat.scoring.lists import WorkbookUnavailableError, published_workbook
from riskstrat.scoring.published import MANIFEST, PublishedMonthError, read_manifest
from riskstrat.serve.auth import (Account, ScryptParams, account_named, authenticate, end_session, new_session,
                                  session_account)
from riskstrat.serve.db import (NOT_APPROPRIATE_REASONS, STATUSES, AuditRow, ListRow, LoadedMonth, PracticeSetting,
                                Status, StatusEvent, make_engine, upgrade, utcnow)
from riskstrat.serve.months import IDENTIFYING_COLUMNS, load_months, purge_notes
from riskstrat.templates import render

__all__ = ["SECURITY_HEADERS", "ServeSettings", "create_app", "run_server"]

SESSION_COOKIE = "rs_session"
LOGIN_COOKIE = "rs_login"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
                               "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
STATIC = {"worklist.js": "text/javascript; charset=utf-8", "worklist.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class ServeSettings:
    """How the worklist runs; the defaults suit one organisation's server behind TLS."""

    lists_dir: Path
    db_url: str = "sqlite:///worklist.db"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    secure_cookies: bool = False  # set behind TLS: the cookie is then never sent over plain HTTP
    session_minutes: int = 8 * 60
    scrypt: ScryptParams = ScryptParams()
    lockout_after: int = 5
    lockout_minutes: float = 15.0
    login_attempts_per_minute: int = 20  # per client address, whatever the user name
    sso_header: str | None = None  # trusted only when set: the reverse proxy must set it and strip it from clients
    note_max: int = 500
    note_retention_days: int | None = 365
    opt_out_files: tuple[Path, ...] = ()


class _RateLimit:
    """At most ``per_minute`` events per key in any 60 seconds (in this process)."""

    def __init__(self, per_minute: int):
        self.per_minute, self.seen, self.lock = per_minute, collections.defaultdict(collections.deque), threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            times = self.seen[key]
            while times and now - times[0] > 60:
                times.popleft()
            if len(times) >= self.per_minute:
                return False
            times.append(now)
            return True


def _audit(db: DbSession, account: str, action: str, practice: str | None = None, pseudonym: str | None = None,
           detail: str | None = None) -> None:
    db.add(AuditRow(at=utcnow(), username=account, action=action, practice_id=practice, pseudonym=pseudonym,
                    detail=detail))


def create_app(settings: ServeSettings, *, load: bool = True) -> FastAPI:
    """The worklist application: the database migrated to head and the published months loaded."""
    engine = make_engine(settings.db_url)
    upgrade(engine)
    Db = sessionmaker(engine, expire_on_commit=False)
    if load:
        with Db() as db:
            load_months(db, settings.lists_dir, opt_out_files=settings.opt_out_files,
                        note_retention_days=settings.note_retention_days)
    signer = URLSafeTimedSerializer(settings.secret_key, salt="riskstrat-worklist")
    max_age = dt.timedelta(minutes=settings.session_minutes)
    limiter = _RateLimit(settings.login_attempts_per_minute)
    app = FastAPI(title="riskstrat worklist", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.db, app.state.settings = engine, Db, settings

    purged = {"at": time.monotonic()}  # load_months cleared old notes just now

    def purge() -> None:
        with Db() as db:
            purge_notes(db, days=settings.note_retention_days)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        # A server runs for months: old notes are cleared hourly, not only at a restart.
        if settings.note_retention_days is not None and time.monotonic() - purged["at"] >= 3600:
            purged["at"] = time.monotonic()
            await run_in_threadpool(purge)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # --- helpers ------------------------------------------------------------------------------

    def page(template: str, status_code: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(render(f"serve/{template}", **context), status_code=status_code)

    def set_cookie(response: Response, name: str, value: str, *, max_age_s: int | None = None) -> None:
        response.set_cookie(name, value, max_age=max_age_s, httponly=True, samesite="strict",
                            secure=settings.secure_cookies, path="/")

    def account_of(request: Request) -> Account | None:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            return None
        try:
            session_id = signer.loads(token, max_age=int(max_age.total_seconds()))
        except BadSignature:
            return None
        with Db() as db:
            return session_account(db, session_id)

    def require(request: Request) -> Account:
        account = account_of(request)
        if account is None:
            raise HTTPException(status_code=303, headers={"Location": "/login"})
        return account

    async def form_checked(request: Request, account: Account):
        form = await request.form()
        if not account.csrf or not secrets.compare_digest(str(form.get("csrf", "")), account.csrf):
            raise HTTPException(status_code=403, detail="The form has expired: reload the page and try again.")
        return form

    def practice_or_404(db: DbSession, account: Account, practice: str, pseudonym: str | None, action: str) -> None:
        """A 404 (and an audit row) unless the account may see ``practice`` (and ``pseudonym`` is on its lists)."""
        allowed = account.may_see(practice)
        if allowed and pseudonym is not None:
            allowed = db.scalar(sa.select(sa.func.count()).select_from(ListRow).where(
                ListRow.practice_id == practice, ListRow.pseudonym == pseudonym)) > 0
        db.commit()
        if not allowed:
            with db.begin():
                _audit(db, account.username, "denied", practice[:64], (pseudonym or "")[:128] or None, action)
            raise HTTPException(status_code=404, detail="Not found")

    def months_of(db: DbSession, practice: str) -> list[str]:
        return list(db.scalars(sa.select(ListRow.month).where(ListRow.practice_id == practice).distinct()
                               .order_by(ListRow.month.desc())).all())

    # --- routes -------------------------------------------------------------------------------

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 303:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        return page("error.html.j2", exc.status_code, message=exc.detail, account=None)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            raise HTTPException(404, "Not found")
        body = resources.files("riskstrat.templates").joinpath("serve", name).read_bytes()
        return Response(body, media_type=STATIC[name])

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)  # none: a browser's automatic request should not log a 404

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, error: str = ""):
        token = secrets.token_urlsafe(32)
        response = page("login.html.j2", csrf=token, error=error[:200], sso=bool(settings.sso_header), account=None)
        set_cookie(response, LOGIN_COOKIE, signer.dumps(token), max_age_s=900)
        return response

    @app.post("/login")
    async def login(request: Request):
        form = await request.form()
        try:
            expected = signer.loads(request.cookies.get(LOGIN_COOKIE, ""), max_age=900)
        except BadSignature:
            expected = None
        if not expected or not secrets.compare_digest(str(form.get("csrf", "")), expected):
            raise HTTPException(403, "The login form has expired: reload the page and try again.")
        client = request.client.host if request.client else "unknown"
        if not limiter.allow(client):
            return page("login.html.j2", 429, csrf=expected, error="Too many attempts: wait a minute and try again.",
                        sso=bool(settings.sso_header), account=None)
        username = str(form.get("username", ""))[:64]
        with Db() as db:
            account, why = authenticate(db, username, str(form.get("password", ""))[:1024],
                                        lockout_after=settings.lockout_after, lockout_minutes=settings.lockout_minutes,
                                        params=settings.scrypt)
            with db.begin():
                _audit(db, username, "login" if account else f"login_{why}")
            if account is None:
                error = ("This account is locked after too many failed attempts: try again later or ask the admin."
                         if why == "locked" else "The user name or password is wrong.")
                return page("login.html.j2", 401, csrf=expected, error=error, sso=bool(settings.sso_header),
                            account=None)
            # A new session id at every login: an id planted before it (fixation) is never promoted.
            old = request.cookies.get(SESSION_COOKIE)
            if old:
                try:
                    end_session(db, signer.loads(old))
                except BadSignature:
                    pass
            account = new_session(db, account, max_age=max_age)
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, SESSION_COOKIE, signer.dumps(account.session_id),
                   max_age_s=int(max_age.total_seconds()))
        response.delete_cookie(LOGIN_COOKIE, path="/")
        return response

    @app.get("/sso")
    def sso(request: Request):
        # Only when configured: the proxy in front authenticates and sets the header (and strips it from clients).
        if not settings.sso_header:
            raise HTTPException(404, "Not found")
        username = request.headers.get(settings.sso_header, "")
        with Db() as db:
            account = account_named(db, username)
            if account is None:
                with db.begin():
                    _audit(db, username[:64] or "-", "sso_unknown")
                raise HTTPException(403, "Your single sign-on identity has no worklist account: ask the admin.")
            account = new_session(db, account, max_age=max_age)
            with db.begin():
                _audit(db, username, "login_sso")
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, SESSION_COOKIE, signer.dumps(account.session_id), max_age_s=int(max_age.total_seconds()))
        return response

    @app.post("/logout")
    async def logout(request: Request):
        account = require(request)
        await form_checked(request, account)
        with Db() as db:
            end_session(db, account.session_id)
            with db.begin():
                _audit(db, account.username, "logout")
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        account = require(request)
        with Db() as db:
            practices = sorted(account.practices)
            latest = db.scalar(sa.select(sa.func.max(LoadedMonth.month)))
            summary = []
            if account.role in ("data_team", "admin") and latest:
                # Counts only: listed people and statuses per practice, no person rows.
                listed = dict(db.execute(sa.select(ListRow.practice_id, sa.func.count()).where(
                    ListRow.month == latest).group_by(ListRow.practice_id)).all())
                statuses = db.execute(sa.select(Status.practice_id, Status.status, sa.func.count()).join(
                    ListRow, sa.and_(ListRow.practice_id == Status.practice_id, ListRow.pseudonym == Status.pseudonym,
                                     ListRow.month == latest)).group_by(Status.practice_id, Status.status)).all()
                counts = collections.defaultdict(dict)
                for pid, status, n in statuses:
                    counts[pid][status] = n
                summary = [(pid, n, counts.get(pid, {})) for pid, n in sorted(listed.items())]
            db.commit()  # ends the read (objects stay loaded)
        return page("home.html.j2", account=account, practices=practices, latest=latest, summary=summary,
                    statuses=STATUSES)

    @app.get("/p/{practice}", response_class=HTMLResponse)
    def worklist(request: Request, practice: str, month: str = "", tier: str = "", group: str = "", new: str = "",
                 status: str = "", due: str = ""):
        account = require(request)
        with Db() as db:
            practice_or_404(db, account, practice, None, "list_view")
            months = months_of(db, practice)
            month = month if month in months else (months[0] if months else "")
            setting = db.get(PracticeSetting, practice)
            hide = bool(setting and setting.hide_not_appropriate)
            query = (sa.select(ListRow, Status).outerjoin(Status, sa.and_(Status.practice_id == ListRow.practice_id,
                                                                          Status.pseudonym == ListRow.pseudonym))
                     .where(ListRow.month == month, ListRow.practice_id == practice))
            # Every filter value is a bound parameter: nothing typed in a filter becomes SQL.
            if tier:
                query = query.where(ListRow.tier == tier)
            if group:
                query = query.where(ListRow.groups.contains(group, autoescape=True))
            if new == "yes":
                query = query.where(ListRow.new.is_(True))
            if status == "to_review":
                query = query.where(sa.or_(Status.status.is_(None), Status.status == "to_review"))
            elif status:
                query = query.where(Status.status == status)
            due_date = _date(due)
            if due_date is not None:
                query = query.where(Status.next_review.is_not(None), Status.next_review <= due_date)
            rows = db.execute(query.order_by(ListRow.rank)).all()
            hidden = 0
            if hide and status != "not_appropriate":
                hidden = sum(1 for _, s in rows if s is not None and s.status == "not_appropriate")
                rows = [(r, s) for r, s in rows if s is None or s.status != "not_appropriate"]
            tiers = db.scalars(sa.select(ListRow.tier).where(ListRow.month == month, ListRow.practice_id == practice)
                               .distinct()).all()
            loaded = db.get(LoadedMonth, month)
            columns = json.loads(loaded.columns) if loaded else []
            db.commit()  # ends the read (objects stay loaded)
            with db.begin():
                _audit(db, account.username, "list_view", practice, None, f"{month}; {len(rows)} rows")
        shown = [c for c in columns if c not in ("Rank", "Person ID", "New this month")]
        return page("worklist.html.j2", account=account, practice=practice, month=month, months=months,
                    rows=[(r, json.loads(r.cells), s) for r, s in rows], columns=shown, hidden=hidden, hide=hide,
                    tiers=sorted(t for t in tiers if t), statuses=STATUSES, reasons=NOT_APPROPRIATE_REASONS,
                    filters={"tier": tier, "group": group, "new": new, "status": status, "due": due})

    @app.get("/p/{practice}/person/{pseudonym}", response_class=HTMLResponse)
    def person(request: Request, practice: str, pseudonym: str):
        account = require(request)
        with Db() as db:
            practice_or_404(db, account, practice, pseudonym, "person_view")
            history = db.scalars(sa.select(ListRow).where(ListRow.practice_id == practice,
                                                          ListRow.pseudonym == pseudonym)
                                 .order_by(ListRow.month.desc())).all()
            current = db.get(Status, (practice, pseudonym))
            events = db.scalars(sa.select(StatusEvent).where(StatusEvent.practice_id == practice,
                                                             StatusEvent.pseudonym == pseudonym)
                                .order_by(StatusEvent.at.desc(), StatusEvent.id.desc())).all()
            db.commit()  # ends the read (objects stay loaded)
            with db.begin():
                _audit(db, account.username, "person_view", practice, pseudonym)
        latest = json.loads(history[0].cells) if history else {}
        return page("person.html.j2", account=account, practice=practice, pseudonym=pseudonym, history=history,
                    latest=latest, current=current, events=events, statuses=STATUSES, reasons=NOT_APPROPRIATE_REASONS,
                    note_max=settings.note_max)

    @app.post("/p/{practice}/person/{pseudonym}/status")
    async def set_status(request: Request, practice: str, pseudonym: str):
        account = require(request)
        form = await form_checked(request, account)
        status, reason = str(form.get("status", "")), str(form.get("reason", "")) or None
        note = str(form.get("note", "")).strip() or None
        if status not in STATUSES:
            raise HTTPException(422, "Choose a status from the list.")
        if status == "not_appropriate" and reason not in NOT_APPROPRIATE_REASONS:
            raise HTTPException(422, "Say why the person is not appropriate: choose a reason.")
        if status != "not_appropriate":
            reason = None
        if note is not None and len(note) > settings.note_max:
            raise HTTPException(422, f"The note is longer than {settings.note_max} characters: shorten it.")
        next_review = _date(str(form.get("next_review", "")))
        with Db() as db:
            practice_or_404(db, account, practice, pseudonym, "status_change")
            month = db.scalar(sa.select(sa.func.max(ListRow.month)).where(ListRow.practice_id == practice,
                                                                          ListRow.pseudonym == pseudonym))
            db.commit()  # ends the read (objects stay loaded)
            now = utcnow()
            # One transaction: the status, its history row and its audit row are all written, or none.
            with db.begin():
                current = db.get(Status, (practice, pseudonym), with_for_update=True)
                if current is None:
                    current = Status(practice_id=practice, pseudonym=pseudonym)
                    db.add(current)
                keep_note = note is None and current.note is not None and form.get("clear_note") != "yes"
                current.status, current.reason, current.next_review = status, reason, next_review
                current.updated_by, current.updated_at = account.username, now
                if not keep_note:
                    current.note, current.note_at = note, (now if note else None)
                db.add(StatusEvent(practice_id=practice, pseudonym=pseudonym, month=month, status=status,
                                   reason=reason, next_review=next_review, by=account.username, at=now))
                _audit(db, account.username, "status_change", practice, pseudonym,
                       status + (f" ({reason})" if reason else ""))
        return RedirectResponse(f"/p/{practice}/person/{pseudonym}", status_code=303)

    @app.post("/p/{practice}/settings")
    async def practice_settings(request: Request, practice: str):
        account = require(request)
        form = await form_checked(request, account)
        with Db() as db:
            practice_or_404(db, account, practice, None, "settings")
            db.commit()  # ends the read (objects stay loaded)
            with db.begin():
                setting = db.get(PracticeSetting, practice) or PracticeSetting(practice_id=practice)
                setting.hide_not_appropriate = form.get("hide_not_appropriate") == "yes"
                db.merge(setting)
                _audit(db, account.username, "settings", practice, None,
                       f"hide_not_appropriate={setting.hide_not_appropriate}")
        return RedirectResponse(f"/p/{practice}", status_code=303)

    @app.post("/p/{practice}/export")
    async def export(request: Request, practice: str):
        """Audit an export the browser makes from the practice's own look-up (the ids never come here)."""
        account = require(request)
        form = await form_checked(request, account)
        wanted = sorted({str(p)[:128] for p in form.getlist("pseudonym")})
        with Db() as db:
            practice_or_404(db, account, practice, None, "export")
            on_list = set(db.scalars(sa.select(ListRow.pseudonym).where(ListRow.practice_id == practice,
                                                                        ListRow.pseudonym.in_(wanted))).all()) \
                if wanted else set()
            db.commit()  # ends the read (objects stay loaded)
            if set(wanted) - on_list:
                with db.begin():
                    _audit(db, account.username, "denied", practice, None,
                           f"export of {len(set(wanted) - on_list)} people not on the practice's lists")
                raise HTTPException(404, "Not found")
            with db.begin():
                for pseudonym in wanted:
                    _audit(db, account.username, "export", practice, pseudonym)
        return Response(status_code=204)

    @app.get("/p/{practice}/workbook")
    def workbook(request: Request, practice: str, month: str = ""):
        """The practice's workbook for ``month`` (list.xlsx: List, Print and About sheets), as the run
        wrote it or would have (:func:`riskstrat.scoring.lists.published_workbook`), with only the
        people the worklist shows; audited."""
        account = require(request)
        with Db() as db:
            practice_or_404(db, account, practice, None, "workbook")
            if month not in months_of(db, practice):
                db.commit()
                raise HTTPException(404, "Not found")
            shown = set(db.scalars(sa.select(ListRow.pseudonym).where(ListRow.month == month,
                                                                      ListRow.practice_id == practice)).all())
            db.commit()  # ends the read
        month_dir = Path(settings.lists_dir) / month
        try:
            data = published_workbook(month_dir, practice, people=shown, refuse_columns=IDENTIFYING_COLUMNS,
                                      manifest=read_manifest(month_dir / MANIFEST, month=month))
        except (WorkbookUnavailableError, PublishedMonthError) as exc:
            with Db() as db, db.begin():
                _audit(db, account.username, "workbook_refused", practice, None, month)
            raise HTTPException(409, f"The workbook for {month} cannot be given: {_reason(exc)}") from None
        with Db() as db, db.begin():
            _audit(db, account.username, "workbook", practice, None, f"{month}; {len(shown)} rows")
        return Response(data, media_type=XLSX, headers={
            "Content-Disposition": f'attachment; filename="{practice}-{month}.xlsx"'})

    @app.get("/admin/audit.csv")
    def audit_csv(request: Request):
        account = require(request)
        if account.role != "admin":
            raise HTTPException(404, "Not found")
        with Db() as db:
            rows = db.scalars(sa.select(AuditRow).order_by(AuditRow.id)).all()
            db.commit()  # ends the read (objects stay loaded)
            with db.begin():
                _audit(db, account.username, "audit_export")
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", "time (UTC)", "user", "action", "practice", "pseudonym", "detail"])
        for r in rows:
            writer.writerow([r.id, r.at.isoformat(timespec="seconds"), r.username, r.action, r.practice_id or "",
                             r.pseudonym or "", r.detail or ""])
        return PlainTextResponse(text.getvalue(), media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="worklist-audit.csv"'})

    return app


def _reason(exc: Exception) -> str:
    """A refusal's reason for the page, without the server's folders (the message names them for the log)."""
    if isinstance(exc, WorkbookUnavailableError):
        return exc.reason
    return "the published month's files could not be verified; ask the data team."


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def run_server(app: FastAPI, *, host: str, port: int, forwarded_allow_ips: str | None = None) -> None:
    """Serve ``app`` with uvicorn until stopped. No access log: its lines would carry pseudonyms in the URLs.

    ``forwarded_allow_ips``: the addresses of the reverse proxies whose ``X-Forwarded-For`` names the
    client (comma-separated; uvicorn's default, None, trusts 127.0.0.1 only). The login rate limit
    counts per client address: a proxy elsewhere that is not trusted here makes every user behind it
    one address, sharing one limit."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, access_log=False, proxy_headers=True, server_header=False,
                forwarded_allow_ips=forwarded_allow_ips)
