"""The nurse console at /console: login, review queue, live calls, call page with its actions and
exports, audit log and users (admin). Server-rendered Jinja2 with autoescaping; the small script in
static/console.js only sets text (never HTML), and a strict Content-Security-Policy forbids inline
scripts, so a caller's words are always shown as text.

Route handlers are plain `def`s: FastAPI runs them in its thread pool, so database work never
blocks the event loop that carries call audio."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from records import exports, repository
from records.models import DISPOSITIONS, User
from records.recordings import recording_file
from web.console import media
from web.console.auth import COOKIE_PATH, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_MAX_AGE_S, Principal

HERE = Path(__file__).parent
STATIC_FILES = {"console.js": "text/javascript", "console.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SECRET_SETTINGS = {"secret_key", "llm_api_key", "twilio_auth_token"}
ERRORS = {
    "reason": "A reason is required to override a disposition.",
    "disposition": "Choose a disposition from the list.",
    "note": "The note is empty.",
}


class ConsoleRoute(APIRoute):
    """Every console response carries the security headers and is never cached (patient data)."""

    def get_route_handler(self) -> Callable[..., Any]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response = await original(request)
            for key, value in SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handler


templates = Jinja2Templates(directory=str(HERE / "templates"))


def _fmt_dt(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _fmt_s(value: float | None) -> str:
    if value is None:
        return ""
    m, s = divmod(max(0.0, float(value)), 60)
    return f"{int(m)}:{s:04.1f}"


def _fmt_ms(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} ms"


templates.env.filters.update(dt=_fmt_dt, secs=_fmt_s, ms=_fmt_ms)


# --- who is asking -------------------------------------------------------------------------------
def get_services(request: Request) -> Any:
    services = getattr(request.app.state, "records", None)
    if services is None:
        raise HTTPException(503, "the records database is not open yet")
    return services


def _principal(request: Request) -> Principal | None:
    services = get_services(request)
    data = services.signer.read(request.cookies.get(SESSION_COOKIE))
    if data is None:
        return None
    with services.database.session() as session:
        user = session.get(User, data["u"])
        if user is None or not user.active or user.session_version != data["v"]:
            return None
        return Principal(id=user.id, username=user.username, role=user.role, nonce=data["n"])


def page_user(request: Request) -> Principal:
    """Pages: anyone not signed in is sent to the login form."""
    user = _principal(request)
    if user is None:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
        raise HTTPException(303, "sign in first", headers={"Location": f"{COOKIE_PATH}/login?next={target}"})
    return user


def api_user(request: Request) -> Principal:
    """Data and actions (audio, exports, live events, POSTs): 401 without a session."""
    user = _principal(request)
    if user is None:
        raise HTTPException(401, "sign in first")
    return user


def admin_page(user: Principal = Depends(page_user)) -> Principal:
    if not user.is_admin:
        raise HTTPException(403, "administrators only")
    return user


def admin_api(user: Principal = Depends(api_user)) -> Principal:
    if not user.is_admin:
        raise HTTPException(403, "administrators only")
    return user


def _check_csrf(request: Request, user: Principal, token: str) -> None:
    token = token or request.headers.get("x-csrf-token", "")
    if not get_services(request).signer.check_csrf(user.nonce, token):
        raise HTTPException(403, "CSRF token missing or wrong; reload the page and try again")


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _audit(request: Request, user: Principal | None, action: str, call_id: str | None = None, **detail: Any) -> None:
    services = get_services(request)
    with services.database.session() as session:
        actor = session.get(User, user.id) if user else None
        repository.audit(session, action, user=actor, call_id=call_id, detail=detail, client=_client(request))


def _render(request: Request, name: str, user: Principal | None, status_code: int = 200, **context: Any) -> Response:
    signer = get_services(request).signer
    context.update(
        user=user,
        csrf=signer.csrf_token(user.nonce) if user else "",
        dispositions=DISPOSITIONS,
        disposition_text=exports.DISPOSITION_TEXT,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(value: str | None) -> str:
    if value and value.startswith(COOKIE_PATH + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return COOKIE_PATH + "/"


def _parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def build_router() -> APIRouter:
    router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

    # --- public: static files and the login form ------------------------------------------------
    @router.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise HTTPException(404)
        return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name])

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        services = get_services(request)
        cookie, field = services.signer.login_token()
        response = _render(request, "login.html", None, login_token=field, next=_safe_next(next), error=None)
        _set_cookie(request, response, LOGIN_CSRF_COOKIE, cookie, max_age=3600)
        return response

    @router.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        login_token: str = Form(""),
        next: str = Form(""),
    ) -> Response:
        services = get_services(request)
        if not services.signer.check_login_token(request.cookies.get(LOGIN_CSRF_COOKIE), login_token):
            raise HTTPException(403, "the login form expired; reload it and try again")
        keys = (f"user:{username.strip().lower()}", f"client:{_client(request)}")
        if services.throttle.blocked(*keys):
            raise HTTPException(429, "too many failed sign-ins; wait a few minutes")
        with services.database.session() as session:
            user = repository.authenticate(session, username, password)
            if user is None:
                services.throttle.fail(*keys)
                repository.audit(session, "login_failed", detail={"username": username[:80]}, client=_client(request))
            else:
                repository.audit(session, "login", user=user, client=_client(request))
                token = services.signer.issue(user.id, user.session_version)
        if user is None:
            cookie, field = services.signer.login_token()
            response = _render(
                request, "login.html", None, 401, login_token=field, next=_safe_next(next),
                error="Wrong username or password.",
            )  # fmt: skip
            _set_cookie(request, response, LOGIN_CSRF_COOKIE, cookie, max_age=3600)
            return response
        services.throttle.clear(*keys)
        response = _see_other(_safe_next(next))
        _set_cookie(request, response, SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
        return response

    @router.post("/logout")
    def logout(request: Request, csrf_token: str = Form(""), user: Principal = Depends(api_user)) -> Response:
        _check_csrf(request, user, csrf_token)
        with get_services(request).database.session() as session:
            account = session.get(User, user.id)
            if account is not None:
                account.session_version += 1
                repository.audit(session, "logout", user=account, client=_client(request))
        response = _see_other(f"{COOKIE_PATH}/login")
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    # --- the review queue and the live view -----------------------------------------------------
    @router.get("/")
    def queue(
        request: Request,
        date_from: str | None = None,
        date_to: str | None = None,
        disposition: str | None = None,
        department: str | None = None,
        reviewed: str | None = None,
        mode: str | None = None,
        campaign: str | None = None,
        red_flags: str | None = None,
        user: Principal = Depends(page_user),
    ) -> Response:
        f = repository.QueueFilter(
            date_from=_parse_date(date_from),
            date_to=_parse_date(date_to),
            disposition=disposition if disposition in DISPOSITIONS else None,
            department=department or None,
            reviewed={"yes": True, "no": False}.get(reviewed or ""),
            mode=mode if mode in ("triage", "followup") else None,
            campaign=campaign or None,
            red_flags_only=red_flags == "1",
        )
        services = get_services(request)
        with services.database.session() as session:
            calls = repository.review_queue(session, f)
            choices = repository.queue_choices(session)
        live_ids = set(services.feed.calls)
        _audit(request, user, "view_queue", filters={k: v for k, v in request.query_params.items() if v})
        return _render(
            request, "queue.html", user, calls=calls, choices=choices, live_ids=live_ids,
            filters=dict(request.query_params),
        )  # fmt: skip

    @router.get("/live")
    def live(request: Request, user: Principal = Depends(page_user)) -> Response:
        _audit(request, user, "view_live")
        return _render(request, "live.html", user)

    @router.get("/live/events")
    def live_events(request: Request, once: bool = False, user: Principal = Depends(api_user)) -> Response:
        """Server-sent events; `once=1` sends the snapshot and ends (polling clients, tests)."""
        return media.sse(get_services(request).feed, request, once=once)

    # --- one call -------------------------------------------------------------------------------
    def _load(request: Request, call_id: str) -> Any:
        with get_services(request).database.session() as session:
            try:
                return repository.get_call(session, call_id)
            except repository.RecordsError:
                raise HTTPException(404, "no such call") from None

    def _call_page(request: Request, user: Principal, call_id: str, error: str | None = None) -> Response:
        services = get_services(request)
        call = _load(request, call_id)
        with services.database.session() as session:
            history_audit = repository.list_audit(session, call_id=call_id, limit=50) if user.is_admin else []
        has_audio = recording_file(call, services.settings.data_dir) is not None
        return _render(
            request, "call.html", user, 400 if error else 200, call=call, has_audio=has_audio,
            live=call_id in services.feed.calls, error=ERRORS.get(error or ""), audit_events=history_audit,
        )  # fmt: skip

    @router.get("/calls/{call_id}")
    def call_page(request: Request, call_id: str, user: Principal = Depends(page_user)) -> Response:
        response = _call_page(request, user, call_id)
        _audit(request, user, "view_call", call_id=call_id)
        return response

    @router.get("/calls/{call_id}/audio")
    def call_audio(request: Request, call_id: str, user: Principal = Depends(api_user)) -> Response:
        call = _load(request, call_id)
        path = recording_file(call, get_services(request).settings.data_dir)
        if path is None:
            raise HTTPException(404, "no recording for this call")
        range_header = request.headers.get("range")
        if not range_header or range_header.replace(" ", "").startswith("bytes=0-"):
            _audit(request, user, "play_recording", call_id=call_id)  # once per playback, not per seek
        return media.file_response(path, range_header)

    @router.get("/calls/{call_id}/export.{fmt}")
    def call_export(request: Request, call_id: str, fmt: str, user: Principal = Depends(api_user)) -> Response:
        if fmt not in ("json", "csv", "fhir.json"):
            raise HTTPException(404, "export formats: json, csv, fhir.json")
        call = _load(request, call_id)
        _audit(request, user, "export", call_id=call_id, format=fmt)
        name = f"carecall-{call_id}"
        if fmt == "csv":
            body, media_type, name = exports.call_to_csv(call), "text/csv; charset=utf-8", name + ".csv"
        elif fmt == "json":
            body, media_type = json.dumps(exports.call_to_dict(call), ensure_ascii=False, indent=2), "application/json"
            name += ".json"
        else:
            body = json.dumps(exports.call_to_fhir(call), ensure_ascii=False, indent=2)
            media_type, name = "application/fhir+json", name + ".fhir.json"
        return Response(body, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def _act(request: Request, user: Principal, call_id: str, csrf_token: str, action: str, do: Callable) -> Response:
        _check_csrf(request, user, csrf_token)
        services = get_services(request)
        with services.database.session() as session:
            try:
                call = repository.get_call(session, call_id)
            except repository.RecordsError:
                raise HTTPException(404, "no such call") from None
            account = session.get(User, user.id)
            try:
                review = do(session, call, account)
            except repository.RecordsError as exc:
                error = str(exc)
                review = None
            else:
                error = None
                repository.audit(
                    session, action, user=account, call_id=call_id, client=_client(request),
                    detail={"review_id": review.id, "from": review.disposition_from, "to": review.disposition_to},
                )  # fmt: skip
        if review is None:
            key = "reason" if "reason" in (error or "") else "disposition" if "disposition" in (error or "") else "note"
            return _call_page(request, user, call_id, error=key)
        return _see_other(f"{COOKIE_PATH}/calls/{quote(call_id)}#history")

    @router.post("/calls/{call_id}/review")
    def review(
        request: Request, call_id: str, csrf_token: str = Form(""), note: str = Form(""),
        user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        return _act(
            request, user, call_id, csrf_token, "review", lambda s, c, u: repository.mark_reviewed(s, c, u, note)
        )

    @router.post("/calls/{call_id}/override")
    def override(
        request: Request, call_id: str, csrf_token: str = Form(""), disposition: str = Form(""),
        reason: str = Form(""), user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        return _act(
            request, user, call_id, csrf_token, "override_disposition",
            lambda s, c, u: repository.override_disposition(s, c, u, disposition, reason),
        )  # fmt: skip

    @router.post("/calls/{call_id}/note")
    def note(
        request: Request, call_id: str, csrf_token: str = Form(""), note: str = Form(""),
        user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        return _act(request, user, call_id, csrf_token, "add_note", lambda s, c, u: repository.add_note(s, c, u, note))

    @router.post("/calls/{call_id}/callback")
    def callback(
        request: Request, call_id: str, csrf_token: str = Form(""), detail: str = Form(""),
        user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        return _act(
            request, user, call_id, csrf_token, "request_callback",
            lambda s, c, u: repository.request_callback(s, c, u, detail),
        )  # fmt: skip

    # --- administration -------------------------------------------------------------------------
    @router.get("/audit")
    def audit_log(
        request: Request, call: str | None = None, username: str | None = None, page: int = 0,
        user: Principal = Depends(admin_page),
    ) -> Response:  # fmt: skip
        page = max(0, page)
        with get_services(request).database.session() as session:
            events = repository.list_audit(session, call_id=call, username=username, limit=100, offset=page * 100)
        _audit(request, user, "view_audit", filters={"call": call, "username": username, "page": page})
        return _render(
            request, "audit.html", user, events=events, page=page, call_filter=call or "",
            username_filter=username or "",
        )  # fmt: skip

    @router.get("/settings")
    def settings_page(request: Request, user: Principal = Depends(admin_page)) -> Response:
        """What this server runs with (secrets never shown). Settings come from CARECALL_* variables."""
        services = get_services(request)
        shown = services.settings.model_dump(exclude=SECRET_SETTINGS)
        shown["database"] = services.database.engine.url.render_as_string(hide_password=True)
        shown.pop("database_url", None)
        _audit(request, user, "view_settings")
        return _render(
            request, "settings.html", user, settings=sorted(shown.items()), dialect=services.database.dialect
        )

    @router.get("/users")
    def users(request: Request, user: Principal = Depends(admin_page)) -> Response:
        with get_services(request).database.session() as session:
            accounts = repository.list_users(session)
        _audit(request, user, "view_users")
        return _render(request, "users.html", user, accounts=accounts, roles=repository.ROLES, error=None)

    @router.post("/users")
    def create_user(
        request: Request, csrf_token: str = Form(""), username: str = Form(""), password: str = Form(""),
        role: str = Form("nurse"), user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        _check_csrf(request, user, csrf_token)
        with get_services(request).database.session() as session:
            try:
                created = repository.create_user(session, username, password, role)
            except repository.RecordsError as exc:
                return _users_error(request, user, session, str(exc))
            actor = session.get(User, user.id)
            repository.audit(
                session, "user_create", user=actor, client=_client(request),
                detail={"user_id": created.id, "username": created.username, "role": role},
            )  # fmt: skip
        return _see_other(f"{COOKIE_PATH}/users")

    @router.post("/users/{user_id}")
    def update_user(
        request: Request, user_id: int, csrf_token: str = Form(""), role: str = Form(""),
        active: str = Form(""), password: str = Form(""), user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        _check_csrf(request, user, csrf_token)
        is_active = {"yes": True, "no": False}.get(active)
        with get_services(request).database.session() as session:
            if user_id == user.id and (is_active is False or (role and role != "admin")):
                return _users_error(request, user, session, "you cannot demote or deactivate yourself")
            try:
                repository.update_user(session, user_id, role=role or None, active=is_active, password=password or None)
            except repository.RecordsError as exc:
                return _users_error(request, user, session, str(exc))
            actor = session.get(User, user.id)
            repository.audit(
                session, "user_update", user=actor, client=_client(request),
                detail={
                    "user_id": user_id, "role": role or None, "active": is_active,
                    "password_changed": bool(password),
                },
            )  # fmt: skip
        return _see_other(f"{COOKIE_PATH}/users")

    return router


def _users_error(request: Request, user: Principal, session: Any, message: str) -> Response:
    accounts = repository.list_users(session)
    return _render(request, "users.html", user, 400, accounts=accounts, roles=repository.ROLES, error=message)


def _set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
