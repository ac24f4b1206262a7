"""Time-limited TURN credentials for the widget (the TURN REST API convention that coturn's
`use-auth-secret` implements): username `<expiry unix time>:<name>`, password
base64(HMAC-SHA1(static-auth-secret, username)). They are handed out with each widget call token, so
a patient behind a strict NAT can relay media through coturn (deploy/coturn/) without a long-lived
password ever reaching a browser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import Any


def turn_credential(secret: str, ttl_s: int, *, now: float | None = None, name: str = "") -> tuple[str, str]:
    """(username, credential) valid until now + ttl_s."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{name or secrets.token_hex(6)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(plain_urls: Sequence[str], settings: Any, *, now: float | None = None) -> list[dict[str, Any]]:
    """What a widget's RTCPeerConnection gets: the configured STUN/TURN URLs as they are, plus the TURN
    URLs (`CARECALL_WEBRTC_TURN_URLS`) with a fresh credential when a TURN secret is configured."""
    servers: list[dict[str, Any]] = [{"urls": url} for url in plain_urls]
    secret = settings.webrtc_turn_secret.get_secret_value()
    if secret and settings.webrtc_turn_urls:
        username, credential = turn_credential(secret, settings.webrtc_turn_ttl_s, now=now)
        servers.append({"urls": list(settings.webrtc_turn_urls), "username": username, "credential": credential})
    return servers
