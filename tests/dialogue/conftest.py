"""Shared pytest configuration for the dialogue tests."""

from __future__ import annotations

import pytest

# --- known failures after merging the screen, semantic and evalkit branches (issue 9) ---------
# Each entry is a real open defect, tracked in the issue 9 closing note. Non-strict: a test that starts
# passing is reported (XPASS) and its entry should then be removed. None is open now (the hold-for-nurse
# call-loop test is a real assertion again).
_MERGE_PENDING: dict[str, str] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        key = item.nodeid.split("tests/dialogue/", 1)[-1].split("[", 1)[0]
        if key in _MERGE_PENDING:
            item.add_marker(pytest.mark.xfail(reason=_MERGE_PENDING[key], strict=False))
