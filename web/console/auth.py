"""Console sessions and CSRF: a signed, time-limited session cookie (itsdangerous) that names the
user and their session version (bumped on logout or any account change), a CSRF token derived from
the session's nonce, and a double-submit token for the login form. Roles come from the database on
every request, never from the cookie."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "carecall_console"
LOGIN_CSRF_COOKIE = "carecall_console_login"
COOKIE_PATH = "/console"
SESSION_MAX_AGE_S = 12 * 3600


@dataclass(frozen=True)
class Principal:
    """The signed-in console user for one request."""

    id: int
    username: str
    role: str
    nonce: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, or one made once and kept (mode 0600) in the data folder so that
    sessions survive a restart."""
    if configured:
        return configured
    path = Path(data_dir) / "console-secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


class SessionSigner:
    def __init__(self, secret: str, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self._secret = secret.encode()
        self._session = URLSafeTimedSerializer(secret, salt="carecall.console.session")
        self._login = URLSafeTimedSerializer(secret, salt="carecall.console.login")
        self.max_age_s = max_age_s

    # --- sessions ---------------------------------------------------------------------------
    def issue(self, user_id: int, session_version: int) -> str:
        return self._session.dumps({"u": user_id, "v": session_version, "n": secrets.token_urlsafe(16)})

    def read(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie:
            return None
        try:
            data = self._session.loads(cookie, max_age=self.max_age_s)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not {"u", "v", "n"} <= data.keys():
            return None
        return data

    def csrf_token(self, nonce: str) -> str:
        return hmac.new(self._secret, f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(nonce), token or "")

    # --- the login form (no session yet): double submit, cookie and field must match ---------
    def login_token(self) -> tuple[str, str]:
        """(cookie value, form value)."""
        raw = secrets.token_urlsafe(16)
        return self._login.dumps(raw), raw

    def check_login_token(self, cookie: str | None, field: str | None) -> bool:
        if not cookie or not field:
            return False
        try:
            raw = self._login.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return isinstance(raw, str) and hmac.compare_digest(raw, field)


class LoginThrottle:
    """At most `limit` failed logins per username or client in `window_s` seconds."""

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        cutoff = time.monotonic() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        return q

    def blocked(self, *keys: str) -> bool:
        return any(len(self._recent(k)) >= self.limit for k in keys)

    def fail(self, *keys: str) -> None:
        for k in keys:
            self._recent(k).append(time.monotonic())

    def clear(self, *keys: str) -> None:
        for k in keys:
            self._failures.pop(k, None)
