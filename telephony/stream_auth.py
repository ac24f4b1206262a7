"""Who may open a Media Streams call: a signed, short-lived, single-use stream token.

The voice webhook (itself checked by X-Twilio-Signature when CARECALL_TWILIO_AUTH_TOKEN is set)
signs the call's parameters into a token and puts it in the TwiML as a `<Parameter>`; the carrier
hands it back in `start.customParameters`. A `start` without a valid token never becomes a call, and
the call's parameters are the signed ones only: customParameters that were not signed are ignored.
Where the carrier signs the WebSocket handshake (X-Twilio-Signature on the upgrade request) and an
auth token is configured, that signature is checked too.

Parameters that touch records (campaign, attempt, patient) are signed only when the webhook that
asked for them was itself verified as the carrier's (their values then come from our own dialler's
URL); from an unverified webhook they are dropped.

Several workers behind a balancer need the same CARECALL_SECRET_KEY (the webhook and the stream may
land on different workers); single use is enforced per process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

log = logging.getLogger("carecall.telephony.stream_auth")

TOKEN_PARAMETER = "carecall_stream_token"
SALT = "carecall.media-stream.v1"
RECORD_KEYS = ("campaign", "attempt", "patient")  # touch records: only from a verified webhook
MAX_TOKEN_CHARS = 2048
MAX_REMEMBERED = 50_000  # used token ids kept for replay checks (each lives one TTL)


class StreamAuthError(Exception):
    """A stream that may not become a call; the message is safe to log (no patient data)."""


class StreamTokens:
    def __init__(self, secret_key: str, *, ttl_s: float = 120.0) -> None:
        # No configured key: a random one per process (one worker: the webhook and the stream
        # are served by the same process, so that is enough).
        self._serializer = URLSafeTimedSerializer(secret_key or secrets.token_urlsafe(32), salt=SALT)
        self.ttl_s = ttl_s
        self._used: OrderedDict[str, float] = OrderedDict()  # token id -> forget after (monotonic)

    def issue(self, params: Mapping[str, str]) -> str:
        return self._serializer.dumps({"j": secrets.token_urlsafe(9), "p": {str(k): str(v) for k, v in params.items()}})

    def redeem(self, token: object) -> dict[str, str]:
        """The signed parameters; the token is spent. StreamAuthError when missing, forged, expired
        or already used."""
        if not isinstance(token, str) or not token:
            raise StreamAuthError("no stream token in the start message")
        if len(token) > MAX_TOKEN_CHARS:
            raise StreamAuthError("stream token too long")
        if not token.isascii():
            raise StreamAuthError("stream token not valid")
        try:
            data = self._serializer.loads(token, max_age=self.ttl_s)
        except SignatureExpired:
            raise StreamAuthError("stream token expired") from None
        except BadSignature:
            raise StreamAuthError("stream token not valid") from None
        if not isinstance(data, dict) or not isinstance(data.get("j"), str) or not isinstance(data.get("p"), dict):
            raise StreamAuthError("stream token not valid")
        now = time.monotonic()
        while self._used and (next(iter(self._used.values())) < now or len(self._used) > MAX_REMEMBERED):
            self._used.popitem(last=False)
        if data["j"] in self._used:
            raise StreamAuthError("stream token already used")
        self._used[data["j"]] = now + self.ttl_s + 5.0
        return {str(k): str(v) for k, v in data["p"].items()}


def handshake_signature_ok(auth_token: str, url: str, signature: str) -> bool:
    """X-Twilio-Signature of a WebSocket upgrade: base64(HMAC-SHA1(token, url)); the URL may carry
    the default port or not."""
    parts = urlsplit(url)
    variants = [url]
    default = {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if parts.port is None and default:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=host)))
    for variant in variants:
        digest = hmac.new(auth_token.encode(), variant.encode("utf-8"), hashlib.sha1).digest()
        if hmac.compare_digest(base64.b64encode(digest).decode("ascii"), signature):
            return True
    return False


def public_stream_url(public_base_url: str, url: Any) -> str:
    """The stream URL as the carrier dialled it (what its handshake signature covers)."""
    base = (public_base_url or "").rstrip("/")
    if not base:
        return str(url)
    base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:] if base.startswith("http") else base
    return base + url.path


class StreamGuard:
    """The two ends: `parameters()` for the webhook's TwiML, `admit()` for the stream's `start`."""

    def __init__(self, settings: Any, *, ttl_s: float = 120.0) -> None:
        self.settings = settings
        self.tokens = StreamTokens(settings.secret_key.get_secret_value(), ttl_s=ttl_s)

    def _auth_token(self) -> str:
        return self.settings.twilio_auth_token.get_secret_value()

    def parameters(self, *, language: str, mode: str, query: Mapping[str, str], verified: bool) -> dict[str, str]:
        """The `<Parameter>`s for the TwiML: the call's parameters (for people reading the TwiML)
        and the token that signs them (the only thing `admit` believes)."""
        signed = {"language": language, "mode": mode}
        dropped = [k for k in RECORD_KEYS if query.get(k)]
        if verified:
            signed.update({k: str(query[k])[:64] for k in dropped})
        elif dropped:
            log.warning("voice webhook: ignoring %s from an unsigned webhook (set CARECALL_TWILIO_AUTH_TOKEN)",
                        ", ".join(dropped))
        return {**signed, TOKEN_PARAMETER: self.tokens.issue(signed)}

    def admit(self, custom: Mapping[str, str], *, url: Any, headers: Mapping[str, str]) -> dict[str, str]:
        """The signed call parameters of a stream's `start`, or StreamAuthError. Nothing else in
        customParameters is used. `url` is the WebSocket's URL (starlette's URL object)."""
        signature = headers.get("x-twilio-signature", "")
        auth_token = self._auth_token()
        public = public_stream_url(self.settings.public_base_url, url)
        if signature and auth_token and not handshake_signature_ok(auth_token, public, signature):
            raise StreamAuthError("bad X-Twilio-Signature on the stream handshake")
        params = self.tokens.redeem(custom.get(TOKEN_PARAMETER))
        ignored = sorted(k for k in custom if k != TOKEN_PARAMETER and custom[k] != params.get(k))
        if ignored:
            log.warning("media stream: ignoring unsigned customParameters (%s)", ", ".join(k[:32] for k in ignored[:8]))
        return params


async def fetch_stream_parameters(stream_url: str, query: Mapping[str, str] | None = None, *,
                                  form: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a carrier does before it opens a stream: POST the voice webhook next to `stream_url`
    (ws[s]://host/telephony/twilio/stream) and read the `<Parameter>`s of the TwiML's `<Stream>`.
    For tools, benchmarks and tests that play the carrier; {} when the webhook gives no stream."""
    import xml.etree.ElementTree as ET
    from urllib.parse import urlencode

    import httpx

    parts = urlsplit(stream_url)
    path = parts.path.rsplit("/", 1)[0] + "/voice"
    scheme = "https" if parts.scheme == "wss" else "http"
    url = urlunsplit((scheme, parts.netloc, path, urlencode(dict(query or {})), ""))
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.post(url, data=dict(form or {"CallSid": "CA" + secrets.token_hex(16)}))
    if r.status_code != 200:
        return {}
    stream = ET.fromstring(r.text).find("Connect/Stream")
    if stream is None:
        return {}
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
