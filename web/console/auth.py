"""Console sessions and CSRF: a signed, time-limited session cookie (itsdangerous) that names the
user and their session version (bumped on logout or any account change), a CSRF token derived from
the session's nonce, and a double-submit token for the login form. Roles come from the database on
every request, never from the cookie."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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


class TooManyAttempts(Exception):
    """Sign-in refused before any password work: wait `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {max(1, round(retry_after_s))} s")
        self.retry_after_s = retry_after_s


class HashingBusy(Exception):
    """Every password-hashing slot stayed taken: the server is under a guessing flood."""


@dataclass(frozen=True)
class Backoff:
    """After `free` failures, each attempt waits base_s · 2^(failures − free) (at most cap_s)
    after the last failure."""

    free: int
    base_s: float
    cap_s: float

    def delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return min(self.cap_s, self.base_s * 2.0 ** min(failures - self.free, 30))


# The account from one address backs off quickly; the address (any account) a little later; the account
# from everywhere only mildly (capped at 30 s), so that nobody can lock a nurse out from her own desk.
PAIR = Backoff(free=5, base_s=2.0, cap_s=900.0)
ADDRESS = Backoff(free=10, base_s=1.0, cap_s=300.0)
ACCOUNT = Backoff(free=20, base_s=1.0, cap_s=30.0)


Entry = tuple[int, float]  # (failures, time of the last failure on the throttle's clock)


class FailureCounts(Protocol):
    """Where the throttle keeps its counts: this process's memory (`MemoryFailureCounts`, one worker),
    or a table every worker shares (records/login_failures.py `SharedFailureCounts`, PostgreSQL)."""

    def read(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The entries there are for `keys` (a key without one is absent)."""
        ...

    def update(self, keys: Sequence[str], change: Callable[[dict[str, Entry]], dict[str, Entry | None]]) -> None:
        """Atomically, against every other update of the same keys: `change` gets their entries and
        returns the new ones (None: delete; a key left out: unchanged). An exception from `change`
        changes nothing and goes to the caller."""
        ...

    def forget(self, before: float) -> None:
        """Entries whose last failure is older than `before` may go (bounded growth)."""
        ...

    def __len__(self) -> int: ...


class MemoryFailureCounts:
    """Counts in this process: at most `max_keys` (least recently failed go first), under a lock."""

    def __init__(self, max_keys: int = 50_000) -> None:
        self.max_keys = max_keys
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # oldest failure first
        self._lock = threading.Lock()

    def read(self, keys: Sequence[str]) -> dict[str, Entry]:
        with self._lock:
            return {key: self._entries[key] for key in keys if key in self._entries}

    def update(self, keys: Sequence[str], change: Callable[[dict[str, Entry]], dict[str, Entry | None]]) -> None:
        with self._lock:
            for key, entry in change({key: self._entries[key] for key in keys if key in self._entries}).items():
                if entry is None:
                    self._entries.pop(key, None)
                else:
                    self._entries[key] = entry
                    self._entries.move_to_end(key)
            while len(self._entries) > self.max_keys:
                self._entries.popitem(last=False)

    def forget(self, before: float) -> None:
        with self._lock:
            while self._entries and next(iter(self._entries.values()))[1] < before:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class LoginThrottle:
    """Login throttling that counts before hashing.

    `begin()` counts the attempt as a failure at once, atomically, and refuses it (TooManyAttempts,
    nothing hashed) while any of its keys is backing off: per account from this address, per
    address, per account from anywhere. A correct password then `succeeded()` and takes the count
    back. `hashing()` bounds the argon2 work in flight in this process (each verification costs
    ~64 MB). The counts live in `counts` (FailureCounts): this process's memory by default, at most
    `max_keys` keys; with PostgreSQL a table shared by every worker, so that N workers behind nginx
    do not give a guesser N times the attempts. Either way each key is forgotten `forget_after_s`
    after its last failure. Keys are digests: no username is kept or logged.

    `clock` is injectable (tests run it virtually). It is wall-clock time by default because counts
    may be shared between processes and machines; a wait is never longer than its rule's delay, so
    a clock stepped back or a worker's clock ahead of the others cannot lock anyone out for longer."""

    def __init__(self, *, max_keys: int = 50_000, forget_after_s: float = 3600.0, max_hashing: int = 2,
                 hash_wait_s: float = 10.0, clock: Callable[[], float] = time.time,
                 pair: Backoff = PAIR, address: Backoff = ADDRESS, account: Backoff = ACCOUNT,
                 counts: FailureCounts | None = None) -> None:
        self.forget_after_s = forget_after_s
        self.hash_wait_s = hash_wait_s
        self._clock = clock
        self._rules = {"pair": pair, "addr": address, "user": account}
        self._counts: FailureCounts = counts if counts is not None else MemoryFailureCounts(max_keys)
        self._hashing = threading.BoundedSemaphore(max_hashing)

    @staticmethod
    def _keys(username: str, address: str | None) -> dict[str, str]:
        user = username.strip().lower()[:80]
        addr = address or "unknown"
        keys = {"pair": f"p:{user}|{addr}", "addr": f"a:{addr}", "user": f"u:{user}"}
        return {kind: key[:2] + hashlib.sha256(key.encode()).hexdigest() for kind, key in keys.items()}

    def _live(self, entry: Entry | None, now: float) -> Entry | None:
        return None if entry is None or now - entry[1] > self.forget_after_s else entry

    def _wait(self, keys: dict[str, str], entries: dict[str, Entry], now: float) -> float:
        wait = 0.0
        for kind, key in keys.items():
            entry = self._live(entries.get(key), now)
            if entry is not None:
                delay = self._rules[kind].delay(entry[0])
                wait = max(wait, min(delay, entry[1] + delay - now))
        return wait

    def retry_after(self, username: str, address: str | None) -> float:
        """Seconds until an attempt would be allowed (0: now)."""
        keys = self._keys(username, address)
        return self._wait(keys, self._counts.read(list(keys.values())), self._clock())

    def begin(self, username: str, address: str | None) -> None:
        """Count this attempt (as a failure until it succeeds) or refuse it with TooManyAttempts."""
        keys = self._keys(username, address)
        now = self._clock()

        def count(entries: dict[str, Entry]) -> dict[str, Entry | None]:
            wait = self._wait(keys, entries, now)
            if wait > 0:
                raise TooManyAttempts(wait)
            return {key: ((self._live(entries.get(key), now) or (0, now))[0] + 1, now) for key in keys.values()}

        self._counts.update(list(keys.values()), count)
        self._counts.forget(now - self.forget_after_s)

    def succeeded(self, username: str, address: str | None) -> None:
        """The password was right: this account's counts go; the address keeps the others."""
        keys = self._keys(username, address)
        now = self._clock()

        def clear(entries: dict[str, Entry]) -> dict[str, Entry | None]:
            addr = self._live(entries.get(keys["addr"]), now)
            return {keys["pair"]: None, keys["user"]: None,
                    keys["addr"]: (addr[0] - 1, addr[1]) if addr is not None and addr[0] > 1 else None}

        self._counts.update(list(keys.values()), clear)

    @contextmanager
    def hashing(self) -> Iterator[None]:
        """One password verification at a time per slot; HashingBusy when none frees in time."""
        if not self._hashing.acquire(timeout=self.hash_wait_s):
            raise HashingBusy("the sign-in service is busy; try again shortly")
        try:
            yield
        finally:
            self._hashing.release()

    def __len__(self) -> int:
        return len(self._counts)


def new_totp_secret() -> str:
    import pyotp

    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    """otpauth:// URI for authenticator apps (shown once to the admin who enrols the user)."""
    import pyotp

    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="CareCall")


def second_factor_ok(user: Any, code: str) -> bool:
    """Staff enrolled in TOTP (an admin enrols them) must give the current code; others need none."""
    secret = getattr(user, "totp_secret", None)
    if not secret:
        return True
    import pyotp

    code = (code or "").strip().replace(" ", "")
    return len(code) == 6 and code.isdigit() and pyotp.TOTP(secret).verify(code, valid_window=1)
