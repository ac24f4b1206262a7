"""The dashboard at /console/dashboard: the figures of records/stats.py over a date range, as tables
(the numbers) and Chart.js charts (web/console/static/vendor, served by CareCall: no CDN), in any
registered language (`?lang=zh`; one without console strings of its own is shown its `rules_from`
language's, then English's: `languages.pick`). Nurses see the queue's figures; administrators also
the service's (QA pass rate per check, voice-to-voice latency, the recogniser's uncertainty).
`/dashboard/data` gives the same figures as JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from dialogue.knowledge import knowledge
from records.qa.config import qa_config
from records.stats import DateRange, StatsError, dashboard
from records.tags import describe, tag_data
from voice.languages import languages
from web.console.auth import Principal
from web.console.common import HERE, api_user, audit_view, get_services, page_user, render

VENDOR_FILES = {"chart.umd.min.js": "text/javascript", "chart.js.LICENSE.md": "text/plain; charset=utf-8"}

UI = {
    "en": {
        "title": "Dashboard", "from": "From", "to": "To", "show": "Show", "language": "中文",
        "calls": "Calls", "triage": "Triage", "followup": "Follow-up", "red_flag_calls": "Calls with red flags",
        "transfers": "Transfers to a nurse", "takeovers": "Nurse takeovers", "reach_rate": "Follow-up reach rate",
        "reached": "reached", "qa_results": "QA results", "per_day_channel": "Calls per day by channel",
        "per_day_mode": "Calls per day by type", "dispositions": "Dispositions", "departments": "Departments",
        "red_flags": "Red flags", "problems": "Follow-up problems found", "service": "Service (administrators)",
        "qa_checks": "QA pass rate per check", "latency": "Voice-to-voice latency (ms)", "p50": "median (p50)",
        "p95": "p95", "uncertain": "Unsure recognised words per 100 caller turns", "count": "Count",
        "rate": "Pass rate", "none": "none", "no_data": "No calls in this range.",
    },
    "zh": {
        "title": "数据看板", "from": "开始", "to": "结束", "show": "查看", "language": "English",
        "calls": "通话", "triage": "分诊", "followup": "回访", "red_flag_calls": "含危险信号的通话",
        "transfers": "转接护士", "takeovers": "护士接管", "reach_rate": "回访触达率", "reached": "已触达",
        "qa_results": "质检结果", "per_day_channel": "每日通话（按渠道）", "per_day_mode": "每日通话（按类型）",
        "dispositions": "处置建议", "departments": "推荐科室", "red_flags": "危险信号", "problems": "回访发现的问题",
        "service": "服务指标（管理员）", "qa_checks": "各质检项通过率", "latency": "语音响应延迟（毫秒）",
        "p50": "中位数 (p50)", "p95": "p95", "uncertain": "每百次来电者发言中识别不确定的词", "count": "数量",
        "rate": "通过率", "none": "无", "no_data": "此时间段内没有通话。",
    },
}  # fmt: skip
CHANNELS = {
    "en": {"websocket": "WebSocket", "webrtc": "Web widget", "media-stream": "Phone (Media Streams)",
           "sip": "Phone (SIP)"},
    "zh": {"websocket": "WebSocket", "webrtc": "网页", "media-stream": "电话（媒体流）", "sip": "电话（SIP）"},
}  # fmt: skip
DISPOSITIONS = {
    "en": {"emergency_ambulance": "Ambulance now", "emergency": "Emergency department now",
           "consultation_24": "Doctor within 24 h", "consultation": "Clinic visit", "self_care": "Home care",
           "none": "None"},
    "zh": {"emergency_ambulance": "立即呼叫救护车", "emergency": "立即急诊", "consultation_24": "24小时内就医",
           "consultation": "门诊就医", "self_care": "居家护理", "none": "无"},
}  # fmt: skip
QA_RESULTS = {
    "en": {"pass": "pass", "warn": "warn", "fail": "fail"},
    "zh": {"pass": "通过", "warn": "注意", "fail": "不合格"},
}


def page_language(lang: str | None) -> str:
    """The page's language: the `?lang=` code when a pack is registered for it, else the fallback's."""
    return languages.or_fallback(lang).code


def switch_language(lang: str) -> str:
    """Where the page's language link goes: the next language with console strings of its own."""
    own = [c for c in UI if c in languages]
    here = next(k for k in languages.lookup_order(lang) if k in UI)
    return own[(own.index(here) + 1) % len(own)]


def labels(lang: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Every name the page shows, in one language (the protocols' names are the language's own)."""
    kn = knowledge()
    ui = languages.pick(UI, lang)
    modes = {"triage": ui["triage"], "followup": ui["followup"]}
    channels, dispositions = languages.pick(CHANNELS, lang), languages.pick(DISPOSITIONS, lang)
    return {
        "ui": ui,
        "channels": {c: channels.get(c, c) for c in figures["calls_by_channel"]},
        "modes": {m: modes.get(m, m) for m in figures["calls_by_mode"]},
        "dispositions": {d: dispositions.get(d, d) for d in figures["dispositions"]},
        "departments": {d: kn.phrases[lang].departments.get(d, d) for d in figures["departments"]},
        "red_flags": {f: describe(f"red_flag:{f}").name(lang) for f in figures["red_flags"]},
        "problems": {
            a: tag_data().followup_areas[a].name(lang) if a in tag_data().followup_areas else a
            for a in figures["followup"]["problems"]
        },
        "qa_results": languages.pick(QA_RESULTS, lang),
        "qa_checks": {c: qa_config().label(c, lang) for c in figures.get("service", {}).get("qa_checks", {})},
    }


def add_dashboard_routes(router: APIRouter) -> None:
    @router.get("/static/vendor/{name}")
    def vendor(name: str) -> Response:
        if name not in VENDOR_FILES:
            raise HTTPException(404)
        return FileResponse(HERE / "static" / "vendor" / name, media_type=VENDOR_FILES[name])

    def figures(request: Request, user: Principal, date_from: str | None, date_to: str | None) -> dict[str, Any]:
        try:
            span = DateRange.parse(date_from, date_to)
        except StatsError as exc:
            raise HTTPException(400, str(exc)) from None
        with get_services(request).database.session() as session:
            return dashboard(session, span, service=user.is_admin)

    @router.get("/dashboard")
    def dashboard_page(
        request: Request, date_from: str | None = None, date_to: str | None = None, lang: str | None = None,
        user: Principal = Depends(page_user),
    ) -> Response:  # fmt: skip
        lang = page_language(lang)
        ui, other = languages.pick(UI, lang), switch_language(lang)
        try:
            data = figures(request, user, date_from, date_to)
        except HTTPException as exc:
            return render(request, "dashboard.html", user, 400, error=exc.detail, data=None, lang=lang, names=None,
                          ui=ui, switch_lang=other, filters=dict(request.query_params))  # fmt: skip
        audit_view(request, user, "view_dashboard", **data["range"])
        names = labels(lang, data)
        return render(
            request, "dashboard.html", user, data=data, names=names, ui=ui, lang=lang, error=None, switch_lang=other,
            filters=dict(request.query_params), payload={"figures": data, "labels": names, "lang": lang},
        )  # fmt: skip

    @router.get("/dashboard/data")
    def dashboard_data(
        request: Request, date_from: str | None = None, date_to: str | None = None, lang: str | None = None,
        user: Principal = Depends(api_user),
    ) -> Response:  # fmt: skip
        data = figures(request, user, date_from, date_to)
        return JSONResponse({"figures": data, "labels": labels(page_language(lang), data)})
