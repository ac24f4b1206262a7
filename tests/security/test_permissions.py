"""The permission matrix over every route of the real server: every role (anonymous, nurse, admin) x
every route, taken from the app's own route table, so a route added later is in the matrix the day
it is added. What each route needs is read from its dependencies (admin_page/admin_api: admins;
page_user/api_user: signed-in staff); a route with neither must be on the PUBLIC list below with the
reason it may be open, or this test fails."""

from __future__ import annotations

import re
import sqlite3
import uuid
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import WebSocketRoute

from tests.security.conftest import PASSWORDS
from tests.security.helpers import csrf, sign_in
from voice.caller import CallerSession

pytestmark = pytest.mark.models

# open routes and what guards them instead of a console session
PUBLIC = {
    ("GET", "/healthz"): "liveness, no data",
    ("GET", "/healthz/live"): "liveness for the load balancer, no data",
    ("GET", "/healthz/ready"): "readiness for the load balancer: admitting or not, no data",
    ("GET", "/metrics"): "loopback only or CARECALL_METRICS_TOKEN",
    ("WS", "/ws/call"): "a single-use call token (CARECALL_CALL_TOKEN_REQUIRED)",
    ("GET", "/console/login"): "the sign-in form",
    ("POST", "/console/login"): "sign-in: throttled, double-submit CSRF",
    ("GET", "/console/static/{name}"): "two static files",
    ("GET", "/console/static/vendor/{name}"): "vendored Chart.js (allow-list), no data",
    ("GET", "/widget"): "the patient widget page",
    ("GET", "/widget/embed.js"): "widget script",
    ("GET", "/widget/static/{name}"): "widget files (allow-list)",
    ("OPTIONS", "/widget/token"): "CORS preflight",
    ("OPTIONS", "/widget/rtc/offer"): "CORS preflight",
    ("POST", "/widget/token"): "anonymous by design: rate-limited, short-lived, single-use tokens",
    ("POST", "/widget/rtc/offer"): "needs a call token",
    ("POST", "/telephony/twilio/voice"): "X-Twilio-Signature when an auth token is set",
    ("POST", "/telephony/twilio/status"): "X-Twilio-Signature when an auth token is set",
    ("POST", "/telephony/twilio/stream-ended"): "X-Twilio-Signature when an auth token is set",
    ("WS", "/telephony/twilio/stream"): "a signed, single-use stream token from our TwiML",
}
ADMIN_DEPS = {"admin_page", "admin_api"}
STAFF_DEPS = {"page_user", "api_user"}
FORMS: dict[str, dict[str, str]] = {
    "/console/calls/{call_id}/override": {"disposition": "emergency", "reason": "seen in person"},
    "/console/calls/{call_id}/note": {"note": "called back"},
    "/console/calls/{call_id}/callback": {"detail": "9am"},
    "/console/users": {"username": "u" + uuid.uuid4().hex[:8], "password": "long-password-1", "role": "nurse"},
    "/console/users/{user_id}": {"role": "nurse", "active": "yes"},
    "/console/users/{user_id}/totp": {"action": "remove"},  # (enrolling would lock the matrix's nurse out)
    "/console/campaigns": {"name": "Matrix campaign", "channel": "sip"},
}


def _dependency_names(dependant: Any) -> set[str]:
    names, stack = set(), [dependant]
    while stack:
        d = stack.pop()
        if d.call is not None:
            names.add(getattr(d.call, "__name__", ""))
        stack.extend(d.dependencies)
    return names


def _routes(app: Any) -> list[tuple[str, Any]]:
    """(full path, route) for every route, through included routers (FastAPI >= 0.16x includes them
    lazily; older versions flatten them into app.routes)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return [(r.path, r) for r in app.routes]
    return [(rc.path, rc.route) for rc in iter_route_contexts(app.routes)]


def route_table() -> list[tuple[str, str, str, bool]]:
    """(method, path, needs 'public' | 'staff' | 'admin', is a page) for every route of the app."""
    from server import create_app
    from settings import Settings

    app = create_app(Settings())
    rows = []
    for path, r in _routes(app):
        if isinstance(r, APIRoute):
            deps = _dependency_names(r.dependant)
            need = "admin" if deps & ADMIN_DEPS else "staff" if deps & STAFF_DEPS else "public"
            page = bool(deps & {"page_user", "admin_page"})
            rows += [(m, path, need, page) for m in sorted(r.methods - {"HEAD"})]
        elif isinstance(r, APIWebSocketRoute | WebSocketRoute):
            rows.append(("WS", path, "public", False))
        else:  # a Mount or plain route would hide its own routes from this matrix
            rows.append(("?", path, "public", False))
    return rows


def test_every_open_route_is_on_the_public_list() -> None:
    table = route_table()
    open_routes = {(m, p) for m, p, need, _ in table if need == "public"}
    assert open_routes <= set(PUBLIC), f"routes open to anyone without a reason: {open_routes - set(PUBLIC)}"
    assert set(PUBLIC) <= {(m, p) for m, p, *_ in table}, "PUBLIC lists routes that no longer exist"
    assert any(need == "admin" for *_, need, _ in table) and any(need == "staff" for *_, need, _ in table)


async def _sessions(base: str) -> dict[str, httpx.AsyncClient]:
    clients: dict[str, httpx.AsyncClient] = {}
    status, clients["nurse"] = await sign_in(base, "nina", PASSWORDS["nurse"], address="127.0.20.1")
    assert status == 303
    status, clients["admin"] = await sign_in(base, "ada", PASSWORDS["admin"], address="127.0.20.2")
    assert status == 303
    clients["anonymous"] = httpx.AsyncClient(base_url=base, timeout=20,
                                             transport=httpx.AsyncHTTPTransport(local_address="127.0.20.3"))
    return clients


async def _ids(target, admin: httpx.AsyncClient) -> dict[str, str]:  # type: ignore[no-untyped-def]
    async with CallerSession(target.ws_call, "en") as line:  # a real call record to look at
        started = await line.wait_event("started", timeout=30)
        assert started is not None
        await line.hang_up()
    r = await admin.post("/console/campaigns", data={"csrf_token": await csrf(admin), "name": "Perm test",
                                                     "channel": "sip"})
    assert r.status_code == 303, r.text[:300]
    campaign = r.headers["location"].rsplit("/", 1)[1]
    con = sqlite3.connect(target.server.data_dir / "carecall.db")
    try:
        nurse_id = con.execute("SELECT id FROM users WHERE username = 'nina'").fetchone()[0]
    finally:
        con.close()
    return {"call_id": started["call_id"], "campaign_id": campaign, "user_id": str(nurse_id), "fmt": "json",
            "name": "console.js", "action": "handback"}


QUERIES = {"/console/live/events": "?once=1"}  # server-sent events: the snapshot, then the stream ends


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids[m.group(1)], path) + QUERIES.get(path, "")


async def test_permission_matrix_over_every_route(target) -> None:
    sessions = await _sessions(target.base)
    try:
        await _matrix(target, sessions)
    finally:
        for client in sessions.values():
            await client.aclose()


async def _matrix(target, sessions: dict[str, httpx.AsyncClient]) -> None:  # type: ignore[no-untyped-def]
    ids = await _ids(target, sessions["admin"])
    table = [row for row in route_table() if row[2] != "public"]
    # logout last: it ends the session the other rows use
    table.sort(key=lambda row: row[1] == "/console/logout")
    failures = []
    for method, path, need, page in table:
        url = _fill(path, ids)
        for role in ("anonymous", "nurse", "admin"):
            if role != "anonymous" and (await sessions[role].get("/console/")).status_code != 200:
                # an earlier row changed the account (which signs it out everywhere): sign in again
                await sessions[role].aclose()
                name, address = {"nurse": ("nina", "127.0.20.1"), "admin": ("ada", "127.0.20.2")}[role]
                status, sessions[role] = await sign_in(target.base, name, PASSWORDS[role], address=address)
                assert status == 303
            client = sessions[role]
            data = dict(FORMS.get(path, {}))
            if method == "POST" and role != "anonymous":
                data["csrf_token"] = await csrf(client)  # a valid token: the role, not CSRF, must decide
            r = await (client.get(url) if method == "GET" else client.post(url, data=data))
            allowed = role == "admin" or (role == "nurse" and need == "staff")
            if role == "anonymous":
                want = "303 to the login form" if page else "401"
                ok = (r.status_code == 303 and "/console/login" in r.headers.get("location", "")) if page \
                    else r.status_code == 401
            elif not allowed:
                want, ok = "403", r.status_code == 403
            else:
                want, ok = "allowed (no 401/403/5xx)", r.status_code not in (401, 403) and r.status_code < 500
            if not ok:
                failures.append(f"{role:9} {method} {path}: got {r.status_code}, want {want}")
    assert not failures, "\n".join(failures)
    assert len(table) >= 20, f"only {len(table)} protected routes in the table"
