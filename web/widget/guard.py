"""Cheap checks that run before the widget's endpoints spend anything: a per-client rate limit and a
bounded JSON body reader (content type, size, nesting, finite numbers, shape)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request

from voice.wire import JsonInputError, loads


class RateLimiter:
    """At most `limit` hits per `window_s` per key (sliding window). Memory stays bounded: idle keys
    are dropped, and past `max_keys` the oldest keys go first."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float | None = None) -> float:
        """0 if this hit is allowed (and counts it), else seconds until the next one would be."""
        now = time.monotonic() if now is None else now
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return max(0.1, hits[0] + self.window_s - now)
        hits.append(now)
        return 0.0

    def _prune(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window_s]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:
            del self._hits[next(iter(self._hits))]


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def check_rate(limiter: RateLimiter, request: Request, what: str) -> None:
    wait = limiter.retry_after(client_key(request))
    if wait:
        raise HTTPException(
            status_code=429,
            detail=f"too many {what} from this address; try again in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The body as a JSON object: 415 for another content type, 413 past `max_bytes` (checked while
    reading, so a lying Content-Length costs nothing), 400 for anything that is not a JSON object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(status_code=415, detail="send application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPException(status_code=413, detail=f"body larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise HTTPException(status_code=413, detail=f"body larger than {max_bytes} bytes")
    try:
        data = loads(body)
    except JsonInputError as exc:
        detail = "body is not valid JSON" if exc.code == "bad_json" else f"body refused: {exc}"
        raise HTTPException(status_code=400, detail=detail) from None
    if not isinstance(data, dict):
        raise HTTPException(status_code=400, detail="body must be a JSON object")
    return data


def ice_server_hosts(ice_servers: list[str]) -> set[str]:
    """The hosts of configured STUN/TURN URLs (`turn:turn.example.org:3478?transport=udp`)."""
    hosts = set()
    for url in ice_servers:
        rest = url.split(":", 1)[1] if ":" in url else url
        rest = rest.split("?", 1)[0].lstrip("/")
        host = rest[1:].split("]", 1)[0] if rest.startswith("[") else rest.split(":", 1)[0]
        if host:
            hosts.add(host.lower())
    return hosts


def remote_candidate_filter(client_address: str, ice_servers: list[str]) -> Callable[[str], bool]:
    """Which remote ICE candidates the server may send connectivity checks (STUN) to: the address the
    peer's own request came from, and relays on our configured TURN servers. Every other address an
    offer names is dropped, so an offer cannot make the server send STUN to a host of its choosing;
    the browser's own checks still reach us and become peer-reflexive candidates (RFC 8445 7.3.1.3)."""
    allowed = {client_address.lower()} | ice_server_hosts(ice_servers)

    def keep(address: str) -> bool:
        return address.lower() in allowed

    return keep
