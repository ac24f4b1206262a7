"""The dashboard and the QA report in Debian's Chromium (Playwright) over a real server: every chart is
drawn by the vendored Chart.js, its data equals the figures counted straight from the database, the
page reads in both languages, and a nurse gets no service charts. Screenshots: tests/web/screenshots.py says where."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.web.console.test_console_browser import SHOTS, page, served, sign_in  # noqa: F401 (fixtures)
from tests.web.console.test_dashboard import expected, seed_dashboard_calls

pytestmark = [pytest.mark.browser]

QUEUE_CHARTS = ("chart-channels", "chart-modes", "chart-dispositions", "chart-departments", "chart-red-flags",
                "chart-problems")  # fmt: skip
SERVICE_CHARTS = ("chart-qa-checks", "chart-latency", "chart-uncertain")
SUMS = """ids => Object.fromEntries(ids.map(id => {
  const c = Chart.getChart(document.getElementById(id));
  return [id, c ? c.data.datasets.map(d => d.data.reduce((a, v) => a + (v || 0), 0)) : null];
}))"""


def wait_chart(pg, canvas: str) -> None:
    pg.wait_for_function(f"() => typeof Chart !== 'undefined' && Chart.getChart(document.getElementById('{canvas}'))")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dashboard_charts_match_the_database(served, page):  # noqa: F811
    from playwright.sync_api import expect

    database = served.console.services.database
    seed_dashboard_calls(database)
    today = datetime.now(UTC).date()
    start = datetime.combine(today - timedelta(days=13), datetime.min.time(), UTC)
    want = expected(database, start, start + timedelta(days=14))
    SHOTS.mkdir(parents=True, exist_ok=True)

    sign_in(page, served.base, "admin")
    page.click("nav a[href='/console/dashboard']")
    page.wait_for_url("**/console/dashboard")
    wait_chart(page, "chart-uncertain")
    sums = page.evaluate(SUMS, [*QUEUE_CHARTS, *SERVICE_CHARTS])
    assert all(sums[c] is not None for c in (*QUEUE_CHARTS, *SERVICE_CHARTS)), sums
    channels = page.evaluate("Chart.getChart(document.getElementById('chart-channels')).data.datasets.map(d=>d.label)")
    assert sorted(sums["chart-channels"]) == sorted(want["by_channel"].values()) and sum(sums["chart-channels"]) == 12
    assert "Web widget" in channels and "Phone (SIP)" in channels
    assert sum(sums["chart-modes"]) == want["calls"]
    assert sums["chart-red-flags"] == [sum(n for t, n in want["tags"].items() if t.startswith("red_flag:"))]
    assert sums["chart-problems"] == [want["tags"]["followup:wound"]]
    latency = page.evaluate("Chart.getChart(document.getElementById('chart-latency')).data.datasets[1].data")
    assert max(v for v in latency if v is not None) >= 3100  # yesterday's slow call in the p95 line
    expect(page.locator("#total-calls")).to_have_text(str(want["calls"]))
    expect(page.locator("#total-transfers")).to_have_text(str(want["transfers"]))
    expect(page.locator("#qa-summary [data-qa=fail]")).to_have_text(str(want["qa"].get("fail", 0)))
    page.screenshot(path=str(SHOTS / "dashboard-en.png"), full_page=True)

    page.click("#switch-lang")
    page.wait_for_url("**lang=zh**")
    wait_chart(page, "chart-qa-checks")
    labels = page.evaluate("Chart.getChart(document.getElementById('chart-qa-checks')).data.labels")
    assert "急救指导完整传达" in labels and "语音响应延迟" in labels
    expect(page.locator("h1")).to_have_text("数据看板")
    page.screenshot(path=str(SHOTS / "dashboard-zh.png"), full_page=True)

    # a narrower range: only today's calls
    page.fill("input[name=date_from]", today.isoformat())
    page.click("#dashboard-range button[type=submit]")
    page.wait_for_url(f"**date_from={today.isoformat()}**")
    wait_chart(page, "chart-modes")
    assert sum(page.evaluate(SUMS, ["chart-modes"])["chart-modes"]) == 8

    # the QA report of the call whose emergency instruction was cut off
    page.goto(f"{served.base}/console/?qa_check=emergency_advice&qa=fail&sort=qa")
    page.locator("tr[data-call-id=d-cut] a").first.click()
    page.wait_for_url("**/console/calls/d-cut")
    expect(page.locator("#qa-result")).to_have_text("fail")
    expect(page.locator("tr[data-check=emergency_advice]")).to_contain_text("cut off, caller heard only")
    page.locator("#qa").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "console-call-qa.png"), full_page=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_nurse_dashboard_has_no_service_charts(served, page):  # noqa: F811
    seed_dashboard_calls(served.console.services.database)
    sign_in(page, served.base, "nurse")
    page.goto(f"{served.base}/console/dashboard")
    wait_chart(page, "chart-modes")
    sums = page.evaluate(SUMS, list(QUEUE_CHARTS))
    assert all(v is not None for v in sums.values()) and sum(sums["chart-modes"]) == 12
    assert page.locator("#chart-latency").count() == 0 and page.locator("#service").count() == 0
