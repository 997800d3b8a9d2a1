"""Accounts, passwords and sessions of the worklist.

- Passwords are hashed with scrypt (:func:`hashlib.scrypt`, memory-hard), a random salt and the
  parameters stored with each hash, so stronger parameters later still verify older hashes.
- A login creates a new session (a random id; the cookie carries it signed), so a session id known
  before login is worthless after it (no fixation); sessions expire; each carries its CSRF token.
- After ``lockout_after`` failed logins in a row an account is locked for ``lockout_minutes``
  (even the right password is refused meanwhile).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session as DbSession

from riskstrat.errors import RiskstratError
from riskstrat.serve.db import ROLES, Session, User, UserPractice, utcnow

__all__ = ["Account", "AccountError", "ScryptParams", "account_named", "add_user", "authenticate", "end_session",
           "hash_password", "list_users", "new_session", "remove_user", "session_account", "verify_password"]

USERNAME = r"^[A-Za-z0-9_.@-]{1,64}$"
MIN_PASSWORD = 12


class AccountError(RiskstratError):
    """An account cannot be added, removed or used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ScryptParams:
    """scrypt's cost: n (CPU/memory, a power of 2), r (block size), p (parallelism). The default uses
    16 MiB per hash (128·n·r bytes); tests lower it, nothing else should."""

    n: int = 2 ** 14
    r: int = 8
    p: int = 1


def hash_password(password: str, *, params: ScryptParams = ScryptParams()) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex) for ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=params.n, r=params.r, p=params.p,
                            maxmem=256 * params.n * params.r + 2 ** 20, dklen=32)
    return f"scrypt${params.n}${params.r}${params.p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (with the salt and parameters stored there)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        n, r, p = int(n), int(r), int(p)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=n, r=r, p=p,
                            maxmem=256 * n * r + 2 ** 20, dklen=32)
    return hmac.compare_digest(digest.hex(), expected)


@dataclass(frozen=True)
class Account:
    """Who is logged in: their name, role, the practices whose people they may see, and the session's CSRF token."""

    user_id: int
    username: str
    role: str
    practices: frozenset[str]
    session_id: str = ""
    csrf: str = ""

    def may_see(self, practice_id: str) -> bool:
        """Whether this account may see the person rows of ``practice_id`` (coordinators and data team given
        the practice; an admin manages accounts and the audit, and sees no person rows)."""
        return practice_id in self.practices


def add_user(db: DbSession, username: str, password: str, *, role: str, practices: Sequence[str] = (),
             params: ScryptParams = ScryptParams(), replace: bool = False) -> None:
    """Add (or with ``replace``, reset) an account; coordinators need at least one practice."""
    import re

    if not re.fullmatch(USERNAME, username):
        raise AccountError(f"{username!r} is not a user name riskstrat accepts: 1 to 64 letters, digits, '_', '.', "
                           f"'@' or '-'")
    if role not in ROLES:
        raise AccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "coordinator" and not practices:
        raise AccountError(f"a coordinator sees only their practices' people: give at least one --practice for "
                           f"{username}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is shorter than {MIN_PASSWORD} characters: choose a longer one")
    with db.begin():
        user = db.scalar(sa.select(User).where(User.username == username))
        if user is not None and not replace:
            raise AccountError(f"user {username} exists already: remove it first, or add it again with --replace")
        if user is None:
            user = User(username=username, role=role, password_hash=hash_password(password, params=params),
                        failed_logins=0)
            db.add(user)
            db.flush()
        else:
            user.role, user.password_hash = role, hash_password(password, params=params)
            user.failed_logins, user.locked_until = 0, None
            db.execute(sa.delete(UserPractice).where(UserPractice.user_id == user.id))
            db.execute(sa.delete(Session).where(Session.user_id == user.id))
        for pid in sorted(set(map(str, practices))):
            db.add(UserPractice(user_id=user.id, practice_id=pid))


def remove_user(db: DbSession, username: str) -> None:
    """Remove an account, its practices and its sessions (its audit rows stay)."""
    with db.begin():
        user = db.scalar(sa.select(User).where(User.username == username))
        if user is None:
            raise AccountError(f"there is no user {username}: `riskstrat users list` shows them")
        db.execute(sa.delete(Session).where(Session.user_id == user.id))
        db.execute(sa.delete(UserPractice).where(UserPractice.user_id == user.id))
        db.delete(user)


def list_users(db: DbSession) -> list[tuple[str, str, list[str], bool]]:
    """``(username, role, practices, locked now)`` for every account, by name."""
    users = db.scalars(sa.select(User).order_by(User.username)).all()
    now = utcnow()
    out = []
    for user in users:
        practices = db.scalars(sa.select(UserPractice.practice_id).where(UserPractice.user_id == user.id)
                               .order_by(UserPractice.practice_id)).all()
        out.append((user.username, user.role, list(practices), bool(user.locked_until and user.locked_until > now)))
    db.rollback()
    return out


def _account(db: DbSession, user: User, session: Session | None = None) -> Account:
    practices = db.scalars(sa.select(UserPractice.practice_id).where(UserPractice.user_id == user.id)).all()
    return Account(user.id, user.username, user.role, frozenset(practices),
                   session.id if session else "", session.csrf if session else "")


def authenticate(db: DbSession, username: str, password: str, *, lockout_after: int, lockout_minutes: float,
                 params: ScryptParams = ScryptParams()) -> tuple[Account | None, str]:
    """``(account, "")`` when the password is right and the account not locked; ``(None, why)`` otherwise
    (``why``: "wrong" or "locked"). Failures are counted, and lock the account after ``lockout_after``
    in a row. An unknown user costs the same scrypt work as a known one (no timing oracle)."""
    with db.begin():
        user = db.scalar(sa.select(User).where(User.username == username).with_for_update())
        if user is None:
            verify_password(password, hash_password("not a password", params=params))
            return None, "wrong"
        now = utcnow()
        if user.locked_until is not None and user.locked_until > now:
            return None, "locked"
        if not verify_password(password, user.password_hash):
            user.failed_logins += 1
            if user.failed_logins >= lockout_after:
                user.locked_until = now + dt.timedelta(minutes=lockout_minutes)
                user.failed_logins = 0
                return None, "locked"
            return None, "wrong"
        user.failed_logins, user.locked_until = 0, None
        return _account(db, user), ""


def account_named(db: DbSession, username: str) -> Account | None:
    """The account called ``username`` (for a trusted single sign-on header), or None."""
    with db.begin():
        user = db.scalar(sa.select(User).where(User.username == username))
        return None if user is None else _account(db, user)


def new_session(db: DbSession, account: Account, *, max_age: dt.timedelta) -> Account:
    """A fresh session for ``account`` (new random id and CSRF token); expired sessions are swept."""
    with db.begin():
        now = utcnow()
        db.execute(sa.delete(Session).where(Session.expires_at <= now))
        session = Session(id=secrets.token_urlsafe(32), user_id=account.user_id, csrf=secrets.token_urlsafe(32),
                          created_at=now, expires_at=now + max_age)
        db.add(session)
    return Account(account.user_id, account.username, account.role, account.practices, session.id, session.csrf)


def session_account(db: DbSession, session_id: str) -> Account | None:
    """The account of a live session, or None (unknown or expired)."""
    with db.begin():
        session = db.get(Session, session_id)
        if session is None or session.expires_at <= utcnow():
            return None
        user = db.get(User, session.user_id)
        return None if user is None else _account(db, user, session)


def end_session(db: DbSession, session_id: str) -> None:
    """Log out: the session is deleted, its cookie worthless."""
    with db.begin():
        db.execute(sa.delete(Session).where(Session.id == session_id))
