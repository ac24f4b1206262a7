"""The nurse console at /console: login, review queue, live calls, call page with its actions and
exports, follow-up campaigns (campaigns.py), audit log and users (admin). Server-rendered Jinja2
with autoescaping; the small script in static/console.js only sets text (never HTML), and a strict
Content-Security-Policy forbids inline scripts, so a caller's words are always shown as text.

Route handlers are plain `def`s: FastAPI runs them in its thread pool, so database work never
blocks the event loop that carries call audio."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, Response

from records import exports, repository
from records.models import DISPOSITIONS, User
from records.qa import CHECK_IDS
from records.recordings import recording_file
from web.console import media
from web.console.admin import add_admin_routes
from web.console.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    HashingBusy,
    Principal,
    TooManyAttempts,
    second_factor_ok,
)
from web.console.campaigns import add_campaign_routes
from web.console.common import (
    COOKIE_PATH,
    ERRORS,
    HERE,
    STATIC_FILES,
    ConsoleRoute,
    api_user,
    audit_view,
    check_csrf,
    client_host,
    get_services,
    page_user,
    parse_date,
    render,
    safe_next,
    see_other,
    set_cookie,
)
from web.console.dashboard import add_dashboard_routes
from web.console.takeover import add_takeover_routes


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
        response = render(request, "login.html", None, login_token=field, next=safe_next(next), error=None)
        set_cookie(request, response, LOGIN_CSRF_COOKIE, cookie, max_age=3600)
        return response

    @router.post("/login")
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        login_token: str = Form(""),
        next: str = Form(""),
        otp: str = Form(""),
    ) -> Response:
        services = get_services(request)
        if not services.signer.check_login_token(request.cookies.get(LOGIN_CSRF_COOKIE), login_token):
            raise HTTPException(403, "the login form expired; reload it and try again")
        address = client_host(request)
        try:  # counted before any hashing; argon2 work bounded (web/console/auth.py, #7)
            services.throttle.begin(username, address)
            with services.throttle.hashing(), services.database.session() as session:
                user = repository.authenticate(session, username, password)
                if user is not None and not second_factor_ok(user, otp):
                    user = None
                if user is None:
                    repository.audit(
                        session, "login_failed", detail={"username": username[:80]}, client=address
                    )
                else:
                    repository.audit(session, "login", user=user, client=address)
                    token = services.signer.issue(user.id, user.session_version)
        except TooManyAttempts as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": str(max(1, round(exc.retry_after_s)))}) from None
        except HashingBusy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        if user is None:
            cookie, field = services.signer.login_token()
            response = render(
                request, "login.html", None, 401, login_token=field, next=safe_next(next),
                error="Wrong username or password.",
            )  # fmt: skip
            set_cookie(request, response, LOGIN_CSRF_COOKIE, cookie, max_age=3600)
            return response
        services.throttle.succeeded(username, address)
        response = see_other(safe_next(next))
        set_cookie(request, response, SESSION_COOKIE, token, max_age=SESSION_MAX_AGE_S)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
        return response

    @router.post("/logout")
    def logout(request: Request, csrf_token: str = Form(""), user: Principal = Depends(api_user)) -> Response:
        check_csrf(request, user, csrf_token)
        with get_services(request).database.session() as session:
            account = session.get(User, user.id)
            if account is not None:
                account.session_version += 1
                repository.audit(session, "logout", user=account, client=client_host(request))
        response = see_other(f"{COOKIE_PATH}/login")
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
        qa: str | None = None,
        qa_check: str | None = None,
        tag: str | None = None,
        sort: str | None = None,
        user: Principal = Depends(page_user),
    ) -> Response:
        f = repository.QueueFilter(
            date_from=parse_date(date_from),
            date_to=parse_date(date_to),
            disposition=disposition if disposition in DISPOSITIONS else None,
            department=department or None,
            reviewed={"yes": True, "no": False}.get(reviewed or ""),
            mode=mode if mode in ("triage", "followup") else None,
            campaign=campaign or None,
            red_flags_only=red_flags == "1",
            qa=qa if qa in repository.QA_FILTERS else None,
            qa_check=qa_check if qa_check in CHECK_IDS else None,
            tag=(tag or "")[:80] or None,
            sort=sort if sort in repository.QUEUE_SORTS else "urgency",
        )
        services = get_services(request)
        with services.database.session() as session:
            calls = repository.review_queue(session, f)
            choices = repository.queue_choices(session)
        live_ids = set(services.feed.calls)
        audit_view(request, user, "view_queue", filters={k: v for k, v in request.query_params.items() if v})
        return render(
            request, "queue.html", user, calls=calls, choices=choices, live_ids=live_ids,
            filters=dict(request.query_params), qa_checks=CHECK_IDS,
        )  # fmt: skip

    @router.get("/live")
    def live(request: Request, user: Principal = Depends(page_user)) -> Response:
        audit_view(request, user, "view_live")
        return render(request, "live.html", user)

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
        # takeover from any worker's console: here, or (cluster) routed by nginx to the named owner
        takeover_here = call_id in getattr(getattr(request.app.state, "takeovers", None), "calls", {})
        owner = services.feed.owner(call_id)
        return render(
            request, "call.html", user, 400 if error else 200, call=call, has_audio=has_audio,
            live=call_id in services.feed.calls, error=ERRORS.get(error or ""), audit_events=history_audit,
            takeover_available=takeover_here or bool(owner), takeover_worker=services.settings.worker_id
            if takeover_here else owner or "",
        )  # fmt: skip

    @router.get("/calls/{call_id}")
    def call_page(request: Request, call_id: str, user: Principal = Depends(page_user)) -> Response:
        response = _call_page(request, user, call_id)
        audit_view(request, user, "view_call", call_id=call_id)
        return response

    @router.get("/calls/{call_id}/audio")
    def call_audio(request: Request, call_id: str, user: Principal = Depends(api_user)) -> Response:
        call = _load(request, call_id)
        path = recording_file(call, get_services(request).settings.data_dir)
        if path is None:
            raise HTTPException(404, "no recording for this call")
        range_header = request.headers.get("range")
        if not range_header or range_header.replace(" ", "").startswith("bytes=0-"):
            audit_view(request, user, "play_recording", call_id=call_id)  # once per playback, not per seek
        return media.file_response(path, range_header)

    @router.get("/calls/{call_id}/export.{fmt}")
    def call_export(request: Request, call_id: str, fmt: str, user: Principal = Depends(api_user)) -> Response:
        if fmt not in ("json", "csv", "fhir.json"):
            raise HTTPException(404, "export formats: json, csv, fhir.json")
        call = _load(request, call_id)
        audit_view(request, user, "export", call_id=call_id, format=fmt)
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
        check_csrf(request, user, csrf_token)
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
                    session, action, user=account, call_id=call_id, client=client_host(request),
                    detail={"review_id": review.id, "from": review.disposition_from, "to": review.disposition_to},
                )  # fmt: skip
        if review is None:
            key = "reason" if "reason" in (error or "") else "disposition" if "disposition" in (error or "") else "note"
            return _call_page(request, user, call_id, error=key)
        return see_other(f"{COOKIE_PATH}/calls/{quote(call_id)}#history")

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

    add_admin_routes(router)
    add_campaign_routes(router)
    add_dashboard_routes(router)
    add_takeover_routes(router)
    return router
