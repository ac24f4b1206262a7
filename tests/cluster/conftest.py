"""Fixtures the cluster tests share with others: Playwright (the WebRTC calls from Chromium)."""

from tests.web.conftest import pw  # noqa: F401  (one Playwright per test module)
