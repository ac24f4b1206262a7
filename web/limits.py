"""Request body limits that hold before anything parses a body (ASGI middleware, outside every route).

A request whose Content-Length is over its limit is answered 413 at once, without reading a byte;
one that streams more than its limit (chunked, or a lying Content-Length) is cut off with 413 as
soon as the count passes it, and the route sees a disconnect instead of the rest. The limit is the
default (64 KiB: every form and JSON body CareCall takes is far smaller), except on the routes named
in `rules` (the console's CSV upload), whose larger limit applies only to a signed-in request: an
anonymous upload gets the default, so nobody can make the server spool megabytes before the route
has even checked who is asking.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("carecall.limits")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class BodyRule:
    """A larger body limit for paths starting with `prefix` (and, with `signed_in`, only for
    requests `is_signed_in(scope)` accepts)."""

    prefix: str
    max_bytes: int
    signed_in: bool = True


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int = DEFAULT_MAX_BODY, rules: Sequence[BodyRule] = (),
                 is_signed_in: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.rules = tuple(rules)
        self.is_signed_in = is_signed_in or (lambda _scope: False)

    def limit_for(self, scope: Scope) -> int:
        path = scope.get("path", "")
        for rule in self.rules:
            if path.startswith(rule.prefix) and (not rule.signed_in or self._signed_in(scope)):
                return rule.max_bytes
        return self.max_bytes

    def _signed_in(self, scope: Scope) -> bool:
        try:
            return bool(self.is_signed_in(scope))
        except Exception:  # a broken cookie check must never turn into a 500; it just means "no"
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit() or len(declared) > 18:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if int(declared) > limit:
                log.info("refused a %s-byte body on %s (limit %d)", declared, scope.get("path", "")[:80], limit)
                await _reply(send, 413, f"request body larger than {limit} bytes")
                return

        received = 0
        started = False
        refused = False

        async def guarded_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        log.info("cut off a streamed body past %d bytes on %s", limit, scope.get("path", "")[:80])
                        await _reply(send, 413, f"request body larger than {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we answered already; whatever the route says after the disconnect is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refused:  # the route choked on the disconnect we gave it: that is the 413 we sent
                return
            raise


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def console_signed_in(scope: Scope) -> bool:
    """A request carrying a console session cookie whose signature and age check out (cheap: no
    database). The route still checks the user and role; this only decides the body limit."""
    from http.cookies import SimpleCookie

    from web.console.auth import SESSION_COOKIE

    records = getattr(scope["app"].state, "records", None) if "app" in scope else None
    raw = _header(scope, b"cookie")
    if records is None or not raw:
        return False
    jar: SimpleCookie = SimpleCookie()
    jar.load(raw)
    morsel = jar.get(SESSION_COOKIE)
    return morsel is not None and records.signer.read(morsel.value) is not None
