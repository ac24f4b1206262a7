"""Call tokens: a widget session gets one short-lived, signed, single-use token that opens exactly
one call (a WebRTC offer or a /ws/call start message) and nothing else.

Signed with itsdangerous; single use is enforced in this process (a used-token set that forgets a
token once it has expired anyway) and, when a `ledger` is set (the server sets the shared database's,
records/shared_tokens.py), across every worker of the deployment.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from voice.languages import languages

SALT = "carecall.widget.call-token.v1"
Language = str  # a code of voice.languages


class TokenError(Exception):
    """A token that cannot open a call; `status` is the HTTP status to answer with."""

    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenInvalid(TokenError):
    status = 401


class TokenExpired(TokenError):
    status = 401


class TokenUsed(TokenError):
    status = 403


@dataclass(frozen=True, slots=True)
class CallGrant:
    token_id: str
    language: Language
    # call parameters that touch records (patient, campaign, hospital): set by server code when it
    # issues the token (a campaign's own data), signed with it, never taken from the caller
    params: dict[str, Any] = field(default_factory=dict)


class UsedTokenLedger(Protocol):
    """Single use shared by every worker (records.shared_tokens.SharedTokenLedger)."""

    def seen(self, token_id: str) -> bool: ...

    def spend(self, token_id: str, keep_s: float) -> bool: ...


class CallTokens:
    def __init__(self, secret_key: str, *, ttl_s: float = 120.0) -> None:
        # No configured key: a random one per process (tokens then die with the process, which is fine
        # for tokens that live two minutes).
        self._serializer = URLSafeTimedSerializer(secret_key or secrets.token_urlsafe(32), salt=SALT)
        self.ttl_s = ttl_s
        self._used: dict[str, float] = {}  # token id -> when it can be forgotten
        self.ledger: UsedTokenLedger | None = None  # shared single use (several workers)

    def issue(self, language: Language, params: dict[str, str] | None = None) -> str:
        """A token for one call; `params` (server-side data only) are signed into it."""
        data: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "lang": language}
        if params:
            data["p"] = {str(k): str(v) for k, v in params.items()}
        return self._serializer.dumps(data)

    def _check(self, token: object) -> CallGrant:
        if not isinstance(token, str) or not token or len(token) > 2048:
            raise TokenInvalid("a call token is required")
        if not token.isascii():  # tokens are URL-safe ASCII; anything else cannot be ours
            raise TokenInvalid("the call token is not valid")
        try:
            data = self._serializer.loads(token, max_age=self.ttl_s)
        except SignatureExpired:
            raise TokenExpired("the call token has expired; reload the widget") from None
        except BadSignature:
            raise TokenInvalid("the call token is not valid") from None
        if not isinstance(data, dict) or data.get("lang") not in languages or not data.get("jti"):
            raise TokenInvalid("the call token is not valid")
        params = data.get("p") if isinstance(data.get("p"), dict) else {}
        return CallGrant(token_id=str(data["jti"]), language=data["lang"], params=dict(params))

    def peek(self, token: object) -> CallGrant:
        """Check a token without using it up (to validate a request before spending effort)."""
        grant = self._check(token)
        if grant.token_id in self._used or (self.ledger is not None and self.ledger.seen(grant.token_id)):
            raise TokenUsed("the call token was already used; start a new call")
        return grant

    def redeem(self, token: object) -> CallGrant:
        """Use a token up: the first redeem opens a call, every later one fails."""
        grant = self.peek(token)
        if self.ledger is not None and not self.ledger.spend(grant.token_id, self.ttl_s + 5.0):
            raise TokenUsed("the call token was already used; start a new call")
        now = time.monotonic()
        self._forget_expired(now)
        self._used[grant.token_id] = now + self.ttl_s + 5.0
        return grant

    def _forget_expired(self, now: float) -> None:
        if len(self._used) < 256:
            return
        for token_id in [t for t, until in self._used.items() if until < now]:
            del self._used[token_id]
