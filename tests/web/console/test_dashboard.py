"""The dashboard's figures against the database: calls made by the real dialogue (tests/records/
conversations.py) over several days and channels, recorded by the real CallRecorder; each figure is
recounted here with a plain query of its own, and the page and JSON must say the same."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from records.models import Call, CallTag, QaCheck, Review, Turn
from records.recorder import CallRecorder
from records.stats import DateRange, StatsError, percentile
from tests.records.conversations import (
    CHEST_PAIN,
    CLEAN_TRIAGE,
    FOLLOWUP_LINES,
    FOLLOWUP_PARAMS,
    Script,
    scripted_call,
)

DAY = 86400.0


def seed_dashboard_calls(database, now: float | None = None) -> None:
    """Nine calls over three days: triage and follow-up, four channels, a red flag, a transfer, a
    cut-off emergency instruction, slow turns, unsure words, a follow-up not reached."""
    now = now or time.time()
    recorder = CallRecorder(database)
    calls = [
        scripted_call("d-clean-1", CLEAN_TRIAGE, channel="webrtc", started_at=now - 2 * DAY),
        scripted_call("d-chest", CHEST_PAIN, channel="sip", started_at=now - 2 * DAY + 60),
        scripted_call("d-slow", CLEAN_TRIAGE, channel="media-stream", started_at=now - DAY,
                      script=Script(latency_ms={4: 6400.0, 6: 3100.0})),
        scripted_call("d-word", CLEAN_TRIAGE, channel="webrtc", started_at=now - DAY + 60,
                      script=Script(uncertain={3: (("throat", 0.2), ("two", 0.4))})),
        scripted_call("d-cut", CHEST_PAIN, channel="websocket", started_at=now - 120,
                      script=Script(interrupt_at={6: 0.3})),
        scripted_call("d-transfer", ["yes", "I want to speak to a nurse"], channel="sip", started_at=now - 90),
        scripted_call("d-fu", FOLLOWUP_LINES, mode="followup", channel="sip", params=FOLLOWUP_PARAMS,
                      started_at=now - 60),
        scripted_call("d-fu-no", ["no", "no"], mode="followup", channel="sip", params=FOLLOWUP_PARAMS,
                      started_at=now - 30),
        scripted_call("d-zh", ["好的", "我嗓子疼两天了", "没有", "没有", "没有", "没有", "没有", "没有"], language="zh",
                      channel="webrtc", started_at=now - 20),
    ]  # fmt: skip
    for events in calls:
        for event in events:
            recorder.write(event)


def expected(database, start: datetime, end: datetime) -> dict:
    """The figures, counted straight from the tables."""
    with database.session() as s:
        in_range = (Call.started_at >= start, Call.started_at < end)
        ids = select(Call.id).where(*in_range)
        by_channel = dict(s.execute(select(Call.channel, func.count()).where(*in_range).group_by(Call.channel)).all())
        tags = dict(
            s.execute(select(CallTag.tag, func.count()).where(CallTag.call_id.in_(ids)).group_by(CallTag.tag)).all()
        )
        qa = dict(s.execute(select(Call.qa_result, func.count()).where(*in_range).group_by(Call.qa_result)).all())
        latency = sorted(
            s.scalars(
                select(Turn.voice_to_voice_ms).where(
                    Turn.call_id.in_(ids), Turn.speaker == "bot", Turn.voice_to_voice_ms.is_not(None)
                )
            )
        )
        checks = {
            (c, r): n
            for c, r, n in s.execute(
                select(QaCheck.check, QaCheck.result, func.count())
                .where(QaCheck.call_id.in_(ids))
                .group_by(QaCheck.check, QaCheck.result)
            )
        }
        return {
            "calls": s.scalar(select(func.count()).select_from(Call).where(*in_range)),
            "by_channel": by_channel,
            "red_flag_calls": s.scalar(select(func.count()).select_from(Call).where(*in_range, Call.has_red_flags)),
            "transfers": s.scalar(
                select(func.count()).select_from(Call).where(*in_range, Call.end_reason == "transferred")
            ),
            "tags": tags,
            "qa": qa,
            "latency": latency,
            "checks": checks,
        }


@pytest.fixture
def dash(console):
    seed_dashboard_calls(console.services.database)
    return console


def test_figures_match_the_database(dash):
    today = datetime.now(UTC).date()
    span = {"date_from": (today - timedelta(days=6)).isoformat(), "date_to": today.isoformat()}
    start = datetime.combine(today - timedelta(days=6), datetime.min.time(), UTC)
    want = expected(dash.services.database, start, start + timedelta(days=7))
    got = dash.client("admin").get("/console/dashboard/data", params=span).json()["figures"]
    assert got["totals"]["calls"] == want["calls"] == 12  # nine here + the console fixture's three
    assert {k: sum(v) for k, v in got["calls_by_channel"].items()} == want["by_channel"]
    assert got["totals"]["red_flag_calls"] == want["red_flag_calls"]
    assert got["totals"]["transfers"] == want["transfers"] == 1
    assert got["red_flags"] == {t.split(":", 1)[1]: n for t, n in want["tags"].items() if t.startswith("red_flag:")}
    assert got["followup"]["problems"] == {"wound": want["tags"]["followup:wound"]}
    assert got["followup"]["calls"] == 3 and got["followup"]["reached"] == 1  # the fixture's has no identity check
    assert got["qa"] == {r: want["qa"].get(r, 0) for r in ("pass", "warn", "fail")}
    service = got["service"]
    assert service["latency"]["turns"] == len(want["latency"])
    assert service["latency"]["overall_p95"] == percentile(want["latency"], 95)
    assert service["latency"]["p95"][-2] >= 3100.0  # yesterday: the slow call
    for check, rates in service["qa_checks"].items():
        for r in ("pass", "warn", "fail", "na"):
            assert rates[r] == want["checks"].get((check, r), 0), (check, r)
    assert service["asr_uncertain"]["words"] == 2
    days = got["days"]
    assert len(days) == 7 and days[-1] == today.isoformat()
    per_day = [sum(col) for col in zip(*got["calls_by_channel"].values(), strict=True)]
    assert sum(per_day) == 12 and per_day[-3] == 2 and per_day[-2] == 2  # two calls two days ago, two yesterday


def test_page_tables_show_the_same_numbers_in_both_languages(dash):
    admin = dash.client("admin")
    page = admin.get("/console/dashboard").text
    assert 'id="total-calls">12<' in page and 'id="total-transfers">1<' in page
    assert 'src="/console/static/vendor/chart.umd.min.js"' in page and 'id="chart-latency"' in page
    zh = admin.get("/console/dashboard", params={"lang": "zh"}).text
    assert '<html lang="zh">' in zh and "数据看板" in zh and "每日通话（按渠道）" in zh and "各质检项通过率" in zh
    assert 'lang=zh">中文</a>' in page and 'lang=en">English</a>' in zh  # the link to the other language
    assert admin.get("/console/static/vendor/chart.umd.min.js").headers["content-type"].startswith("text/javascript")
    assert "MIT" in admin.get("/console/static/vendor/chart.js.LICENSE.md").text
    assert admin.get("/console/static/vendor/..%2Fconsole.js").status_code == 404


def test_nurses_see_the_queue_figures_not_the_service(dash):
    nurse = dash.client("nurse")
    data = nurse.get("/console/dashboard/data").json()["figures"]
    assert "service" not in data and data["totals"]["calls"] == 12
    page = nurse.get("/console/dashboard").text
    assert 'id="service"' not in page and 'id="chart-latency"' not in page and 'id="chart-channels"' in page
    assert dash.client().get("/console/dashboard/data").status_code == 401
    assert dash.client().get("/console/dashboard", follow_redirects=False).status_code == 303


def test_date_range_filter_and_bad_ranges(dash):
    admin = dash.client("admin")
    today = datetime.now(UTC).date()
    only_today = admin.get("/console/dashboard/data", params={"date_from": today.isoformat()}).json()["figures"]
    assert only_today["days"] == [today.isoformat()]
    assert only_today["totals"]["calls"] == 8  # the calls of the last few minutes (5 here, 3 from the fixture)
    old = admin.get("/console/dashboard/data", params={"date_from": "2020-01-01", "date_to": "2020-01-31"}).json()
    assert old["figures"]["totals"]["calls"] == 0
    for bad in ({"date_from": "yesterday"}, {"date_from": "2026-02-01", "date_to": "2026-01-01"},
                {"date_from": "2020-01-01", "date_to": "2026-01-01"}):  # fmt: skip
        assert admin.get("/console/dashboard/data", params=bad).status_code == 400
        page = admin.get("/console/dashboard", params=bad)
        assert page.status_code == 400 and 'id="dashboard-error"' in page.text


def test_takeovers_count_from_the_call_history(dash):
    with dash.services.database.session() as s:
        s.add(Review(call_id="d-cut", user_id=None, username="nina", kind="takeover", text="took the call"))
    assert dash.client("nurse").get("/console/dashboard/data").json()["figures"]["totals"]["takeovers"] == 1


def test_date_range_parsing():
    from datetime import date

    assert DateRange.parse(None, "2026-12-02").start == date(2026, 11, 19)
    with pytest.raises(StatsError):
        DateRange.parse("2026-12-03", "2026-12-02")
    assert percentile([], 50) is None and percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
