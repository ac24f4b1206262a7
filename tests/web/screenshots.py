"""Where the browser tests save their screenshots. `make screenshots` (CARECALL_SCREENSHOTS=update) writes
them into docs/screenshots/ for the README; any other run writes them to a temporary folder, so that
`make test` leaves the checkout as it found it (a clean `git status` after a run)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshots_dir() -> Path:
    if os.environ.get("CARECALL_SCREENSHOTS") == "update":
        return DOCS
    folder = Path(tempfile.gettempdir()) / "carecall-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
