"""Fixtures shared by the browser tests of the widget and the console."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Playwright, sync_playwright


@pytest.fixture(scope="module")
def pw() -> Iterator[Playwright]:
    """Playwright for one test module (its browsers are started per test)."""
    with sync_playwright() as p:
        yield p
