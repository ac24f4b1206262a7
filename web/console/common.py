"""What every console route shares: security headers, templates, who is asking (session, role,
CSRF), audit of views, rendering."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from records import exports, repository
from records.models import DISPOSITIONS, User
from records.qa.config import qa_config
from records.tags import describe
from web.console.auth import COOKIE_PATH, SESSION_COOKIE, Principal

HERE = Path(__file__).parent
STATIC_FILES = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "dashboard.js": "text/javascript",
    "takeover.js": "text/javascript",
}
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


def _mark_words(text: str | None, words: list[dict[str, Any]] | None) -> Markup:
    """The caller's words with the ones the recogniser was unsure of in <mark> (every part escaped)."""
    text = text or ""
    unsure = [str(w.get("word") or "") for w in words or [] if isinstance(w, dict)]
    unsure = sorted({w for w in unsure if w.strip()}, key=len, reverse=True)
    if not unsure:
        return Markup(escape(text))
    probs = {str(w.get("word")): w.get("p") for w in words or [] if isinstance(w, dict)}
    pattern = re.compile("|".join(re.escape(w) for w in unsure))
    out, pos = [], 0
    for m in pattern.finditer(text):
        p = probs.get(m.group(0))
        title = f"recogniser unsure (p={p:.2f})" if isinstance(p, int | float) else "recogniser unsure"
        out.append(escape(text[pos : m.start()]))
        out.append(Markup('<mark class="unsure" title="{}">{}</mark>').format(title, m.group(0)))
        pos = m.end()
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _tag_name(code: str, lang: str = "en") -> str:
    return describe(code).name(lang)


def _qa_label(check: str, lang: str = "en") -> str:
    return qa_config().label(check, lang)


templates.env.filters.update(
    dt=_fmt_dt, secs=_fmt_s, ms=_fmt_ms, mark_words=_mark_words, tag_name=_tag_name, qa_label=_qa_label
)


# --- who is asking -------------------------------------------------------------------------------
def get_services(request: Request) -> Any:
    services = getattr(request.app.state, "records", None)
    if services is None:
        raise HTTPException(503, "the records database is not open yet")
    return services


def principal(request: Request) -> Principal | None:
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
    user = principal(request)
    if user is None:
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="")
        raise HTTPException(303, "sign in first", headers={"Location": f"{COOKIE_PATH}/login?next={target}"})
    return user


def api_user(request: Request) -> Principal:
    """Data and actions (audio, exports, live events, POSTs): 401 without a session."""
    user = principal(request)
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


def check_csrf(request: Request, user: Principal, token: str) -> None:
    token = token or request.headers.get("x-csrf-token", "")
    if not get_services(request).signer.check_csrf(user.nonce, token):
        raise HTTPException(403, "CSRF token missing or wrong; reload the page and try again")


def client_host(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_view(
    request: Request, user: Principal | None, action: str, call_id: str | None = None, **detail: Any
) -> None:
    services = get_services(request)
    with services.database.session() as session:
        actor = session.get(User, user.id) if user else None
        repository.audit(session, action, user=actor, call_id=call_id, detail=detail, client=client_host(request))


def render(request: Request, name: str, user: Principal | None, status_code: int = 200, **context: Any) -> Response:
    signer = get_services(request).signer
    context.update(
        user=user,
        csrf=signer.csrf_token(user.nonce) if user else "",
        dispositions=DISPOSITIONS,
        disposition_text=exports.DISPOSITION_TEXT,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def safe_next(value: str | None) -> str:
    if value and value.startswith(COOKIE_PATH + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return COOKIE_PATH + "/"


def parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
