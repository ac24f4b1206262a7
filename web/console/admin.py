"""Administration pages of the console: the audit log, users, settings (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from records import repository
from records.models import User
from web.console.auth import Principal, new_totp_secret, totp_uri
from web.console.common import (
    COOKIE_PATH,
    SECRET_SETTINGS,
    admin_api,
    admin_page,
    audit_view,
    check_csrf,
    client_host,
    get_services,
    render,
    see_other,
)


def add_admin_routes(router: APIRouter) -> None:
    @router.get("/audit")
    def audit_log(
        request: Request, call: str | None = None, username: str | None = None, page: int = 0,
        user: Principal = Depends(admin_page),
    ) -> Response:  # fmt: skip
        page = max(0, page)
        with get_services(request).database.session() as session:
            events = repository.list_audit(session, call_id=call, username=username, limit=100, offset=page * 100)
        audit_view(request, user, "view_audit", filters={"call": call, "username": username, "page": page})
        return render(
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
        audit_view(request, user, "view_settings")
        return render(request, "settings.html", user, settings=sorted(shown.items()), dialect=services.database.dialect)

    @router.get("/users")
    def users(request: Request, user: Principal = Depends(admin_page)) -> Response:
        with get_services(request).database.session() as session:
            accounts = repository.list_users(session)
        audit_view(request, user, "view_users")
        return render(request, "users.html", user, accounts=accounts, roles=repository.ROLES, error=None)

    @router.post("/users")
    def create_user(
        request: Request, csrf_token: str = Form(""), username: str = Form(""), password: str = Form(""),
        role: str = Form("nurse"), user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        check_csrf(request, user, csrf_token)
        with get_services(request).database.session() as session:
            try:
                created = repository.create_user(session, username, password, role)
            except repository.RecordsError as exc:
                return _users_error(request, user, session, str(exc))
            actor = session.get(User, user.id)
            repository.audit(
                session, "user_create", user=actor, client=client_host(request),
                detail={"user_id": created.id, "username": created.username, "role": role},
            )  # fmt: skip
        return see_other(f"{COOKIE_PATH}/users")

    @router.post("/users/{user_id}")
    def update_user(
        request: Request, user_id: int, csrf_token: str = Form(""), role: str = Form(""),
        active: str = Form(""), password: str = Form(""), user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        check_csrf(request, user, csrf_token)
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
                session, "user_update", user=actor, client=client_host(request),
                detail={
                    "user_id": user_id, "role": role or None, "active": is_active,
                    "password_changed": bool(password),
                },
            )  # fmt: skip
        return see_other(f"{COOKIE_PATH}/users")


    @router.post("/users/{user_id}/totp")
    def user_totp(
        request: Request, user_id: int, csrf_token: str = Form(""), action: str = Form(""),
        user: Principal = Depends(admin_api),
    ) -> Response:  # fmt: skip
        """Enrol a user in the TOTP second factor (the secret is shown once, on this answer) or remove it."""
        check_csrf(request, user, csrf_token)
        if action not in ("enrol", "remove"):
            with get_services(request).database.session() as session:
                return _users_error(request, user, session, "action must be enrol or remove")
        with get_services(request).database.session() as session:
            account = session.get(User, user_id)
            if account is None:
                return _users_error(request, user, session, "no such user")
            secret = new_totp_secret() if action == "enrol" else None
            account.totp_secret = secret
            account.session_version += 1  # a changed second factor signs the account out everywhere
            repository.audit(session, "user_totp", user=session.get(User, user.id), client=client_host(request),
                             detail={"user_id": user_id, "action": action})
            if secret is None:
                return see_other(f"{COOKIE_PATH}/users")
            enrolled = {"username": account.username, "secret": secret, "uri": totp_uri(secret, account.username)}
            accounts = repository.list_users(session)
            return render(request, "users.html", user, accounts=accounts, roles=repository.ROLES, error=None,
                          enrolled=enrolled)


def _users_error(request: Request, user: Principal, session: Any, message: str) -> Response:
    accounts = repository.list_users(session)
    return render(request, "users.html", user, 400, accounts=accounts, roles=repository.ROLES, error=message)
