"""Fixtures shared by the browser tests of the widget and the console."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Playwright, sync_playwright


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    """Playwright for one test module (its browsers are started per test)."""
    with sync_playwright() as p:
        yield p


# Playwright waits 30 s by default for a page, a click or a URL; two suites on 2 cores have taken longer
# to render a chart page. A bound, not a speed check: every browser context of the tests uses it.
BROWSER_WAIT_MS = 120_000


def patient(context: BrowserContext) -> BrowserContext:
    """`context` with the tests' generous default wait for every action and navigation."""
    context.set_default_timeout(BROWSER_WAIT_MS)
    context.set_default_navigation_timeout(BROWSER_WAIT_MS)
    return context
