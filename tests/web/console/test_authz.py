"""Authorisation over EVERY console route: anonymous, a widget token holder, nurse, admin.

"widget" is a patient's browser holding a real call token from web/widget/tokens.py (what
POST /widget/token hands out), signed with the same CARECALL_SECRET_KEY as console sessions,
presented every way it could be: as a bearer header, as a widget cookie and as the console's own
session cookie. "widget-random" does the same with random values (for a token format that may
change). Neither may open anything but the login page and the console's static files."""

from __future__ import annotations

import secrets

import pytest
from fastapi.routing import APIRoute

from tests.web.console.conftest import CAMPAIGN, USERS, XSS_CALL, csrf_of

# (method, route template, concrete path, who may use it, form data for POSTs)
PUBLIC, NURSE, ADMIN = "public", "nurse", "admin"
ROUTES = [
    ("GET", "/console/static/{name}", "/console/static/console.js", PUBLIC, None),
    ("GET", "/console/login", "/console/login", PUBLIC, None),
    ("GET", "/console/", "/console/", NURSE, None),
    ("GET", "/console/live", "/console/live", NURSE, None),
    ("GET", "/console/live/events", "/console/live/events?once=1", NURSE, None),
    ("GET", "/console/calls/{call_id}", f"/console/calls/{XSS_CALL}", NURSE, None),
    ("GET", "/console/calls/{call_id}/audio", f"/console/calls/{XSS_CALL}/audio", NURSE, None),
    ("GET", "/console/calls/{call_id}/export.{fmt}", f"/console/calls/{XSS_CALL}/export.fhir.json", NURSE, None),
    ("POST", "/console/calls/{call_id}/review", f"/console/calls/{XSS_CALL}/review", NURSE, {}),
    ("POST", "/console/calls/{call_id}/override", f"/console/calls/{XSS_CALL}/override", NURSE,
     {"disposition": "emergency", "reason": "seen in person"}),
    ("POST", "/console/calls/{call_id}/note", f"/console/calls/{XSS_CALL}/note", NURSE, {"note": "called back"}),
    ("POST", "/console/calls/{call_id}/callback", f"/console/calls/{XSS_CALL}/callback", NURSE, {"detail": "9am"}),
    ("POST", "/console/logout", "/console/logout", NURSE, {}),
    ("GET", "/console/audit", "/console/audit", ADMIN, None),
    ("GET", "/console/users", "/console/users", ADMIN, None),
    ("GET", "/console/settings", "/console/settings", ADMIN, None),
    ("POST", "/console/users", "/console/users", ADMIN,
     {"username": "newbie", "password": "long-password", "role": "nurse"}),
    ("POST", "/console/users/{user_id}", "/console/users/{nurse_id}", ADMIN, {"role": "nurse", "active": "yes"}),
    ("POST", "/console/users/{user_id}/totp", "/console/users/{nurse_id}/totp", ADMIN, {"action": "remove"}),
    ("GET", "/console/campaigns", "/console/campaigns", NURSE, None),
    ("GET", "/console/campaigns/{campaign_id}", f"/console/campaigns/{CAMPAIGN}", NURSE, None),
    ("POST", "/console/campaigns", "/console/campaigns", ADMIN, {"name": "Ortho January", "channel": "sip"}),
    ("POST", "/console/campaigns/{campaign_id}/import", f"/console/campaigns/{CAMPAIGN}/import", ADMIN, {}),
    ("POST", "/console/campaigns/{campaign_id}/pause", f"/console/campaigns/{CAMPAIGN}/pause", ADMIN, {}),
    ("POST", "/console/campaigns/{campaign_id}/resume", f"/console/campaigns/{CAMPAIGN}/resume", ADMIN, {}),
    ("GET", "/console/static/vendor/{name}", "/console/static/vendor/chart.umd.min.js", PUBLIC, None),
    ("GET", "/console/dashboard", "/console/dashboard", NURSE, None),
    ("GET", "/console/dashboard/data", "/console/dashboard/data", NURSE, None),
    ("POST", "/console/calls/{call_id}/takeover", f"/console/calls/{XSS_CALL}/takeover", NURSE, {"sdp": "v=0"}),
    ("POST", "/console/calls/{call_id}/takeover/{action}", f"/console/calls/{XSS_CALL}/takeover/handback", NURSE, {}),
]  # fmt: skip
# routes that take JSON (the takeover's signalling), and what an allowed user gets from this console-only
# app, which has no call hub and so no takeover registry: 503, never the call
JSON_ROUTES = {"/console/calls/{call_id}/takeover": 503, "/console/calls/{call_id}/takeover/{action}": 503}
# uploads sent with a route's form (multipart)
FILES = {
    "/console/campaigns/{campaign_id}/import": {
        "file": ("new.csv", b"name,phone\nNew Patient,+8613900000009\n", "text/csv")
    }
}
PAGES = {
    "/console/",
    "/console/dashboard",
    "/console/live",
    "/console/calls/{call_id}",
    "/console/audit",
    "/console/users",
    "/console/settings",
    "/console/campaigns",
    "/console/campaigns/{campaign_id}",
}


def test_the_matrix_covers_every_console_route():
    from web.console.routes import build_router

    routes = {
        (method, "/console" + r.path) for r in build_router().routes if isinstance(r, APIRoute) for method in r.methods
    }
    covered = {(m, t) for m, t, *_ in ROUTES} | {("POST", "/console/login")}  # login: test_login_form_*
    assert routes == covered


def widget_client(console, real: bool):
    if real:
        from web.widget.tokens import CallTokens

        token = CallTokens(console.settings.secret_key.get_secret_value()).issue("en")
    else:
        token = secrets.token_urlsafe(40)
    return console.client(
        headers={"Authorization": f"Bearer {token}"},
        cookies={"carecall_widget": token, "carecall_console": token},
    )


@pytest.mark.parametrize("who", ["anonymous", "widget", "widget-random", "nurse", "admin"])
@pytest.mark.parametrize(
    ("method", "template", "path", "needs", "form"), ROUTES, ids=[f"{m} {t}" for m, t, *_ in ROUTES]
)
def test_authorisation_matrix(console, who, method, template, path, needs, form):
    path = path.replace("{nurse_id}", str(console.user_ids["nurse"]))
    if who.startswith("widget"):
        client = widget_client(console, real=who == "widget")
    else:
        client = console.client(None if who == "anonymous" else who)
    data = None
    if form is not None:
        data = dict(form)
        if who in USERS:
            data["csrf_token"] = csrf_of(client)
    if template in JSON_ROUTES:
        r = client.request(method, path, json=data, follow_redirects=False)
    else:
        r = client.request(method, path, data=data, files=FILES.get(template), follow_redirects=False)

    allowed = needs == PUBLIC or (needs == NURSE and who in USERS) or (needs == ADMIN and who == "admin")
    if allowed:
        ok = (JSON_ROUTES[template],) if template in JSON_ROUTES else (303,) if method == "POST" else (200,)
        assert r.status_code in ok, (r.status_code, r.text[:300])
    elif who in USERS:  # signed in, wrong role
        assert r.status_code == 403
        assert "Chest" not in r.text and "nina" not in r.text
    elif method == "GET" and template in PAGES:
        assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    else:
        assert r.status_code == 401
    if not allowed:
        assert "chest pain" not in r.text.lower() and "alert(1)" not in r.text
        assert "Wang Fang" not in r.text and "Cardiology December" not in r.text


def test_login_form_needs_its_token_and_the_right_password(console):
    client = console.client()
    no_token = client.post(
        "/console/login", data={"username": "ada", "password": "admin-pass-1"}, follow_redirects=False
    )
    assert no_token.status_code == 403
    page = client.get("/console/login")
    import re

    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    wrong = client.post(
        "/console/login",
        data={"username": "ada", "password": "nope", "login_token": token},
        follow_redirects=False,
    )
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_session_cookie_flags_and_logout_ends_the_session(console):
    client = console.client()
    import re

    page = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/console/login",
        data={"username": "nina", "password": "nurse-pass-1", "login_token": token, "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/console/"  # no open redirect
    cookie = next(h for k, h in r.headers.multi_items() if k == "set-cookie" and h.startswith("carecall_console="))
    assert (
        "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Path=/console" in cookie
    )
    stolen = client.cookies.get("carecall_console")
    client.post("/console/logout", data={"csrf_token": csrf_of(client)}, follow_redirects=False)
    replay = console.client(cookies={"carecall_console": stolen})
    assert replay.get("/console/", follow_redirects=False).status_code == 303, "a logged-out session is dead"


def test_secure_cookie_over_https(console):
    client = console.client(base_url="https://testserver")
    import re

    page = client.get("/console/login")
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        "/console/login",
        data={"username": "nina", "password": "nurse-pass-1", "login_token": token},
        follow_redirects=False,
    )
    cookie = next(h for k, h in r.headers.multi_items() if k == "set-cookie" and h.startswith("carecall_console="))
    assert "Secure" in cookie


def test_repeated_failed_logins_are_throttled(console):
    client = console.client()
    import re

    codes = []
    for _ in range(7):
        token = re.search(r'name="login_token" value="([^"]+)"', client.get("/console/login").text).group(1)
        r = client.post("/console/login", data={"username": "ada", "password": "bad", "login_token": token})
        codes.append(r.status_code)
    assert codes[:5] == [401] * 5 and codes[-1] == 429


def test_disabled_user_loses_access_at_once(console):
    nurse = console.client("nurse")
    admin = console.client("admin")
    r = admin.post(
        f"/console/users/{console.user_ids['nurse']}",
        data={"csrf_token": csrf_of(admin), "role": "nurse", "active": "no"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert nurse.get("/console/", follow_redirects=False).status_code == 303
