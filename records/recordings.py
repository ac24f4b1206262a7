"""Call recordings on disk: where they are (`<data_dir>/recordings/<call_id>.wav`, stereo, caller
left and bot right, written by the call loop), which file a call may serve, and the retention purge."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Select, select

from records.db import Database, private_dir
from records.models import Call
from records.repository import audit, expired_recordings

log = logging.getLogger("carecall.records.recordings")


def recordings_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "recordings"


def private_recordings_dir(data_dir: Path) -> Path:
    """The recordings folder, created 0700 (the WAVs in it are written 0600 by the call loop)."""
    return private_dir(recordings_dir(data_dir))


def recording_file(call: Call, data_dir: Path) -> Path | None:
    """The call's WAV if it exists and lies inside the recordings folder (never any other file)."""
    if call.recording_purged_at is not None:
        return None
    root = recordings_dir(data_dir).resolve()
    candidates = [Path(call.recording_path)] if call.recording_path else []
    candidates.append(root / f"{call.id}.wav")  # a call cut off before it could report its path
    for candidate in candidates:
        try:
            path = candidate.resolve()
        except OSError:
            continue
        if path.is_relative_to(root) and path.is_file():
            return path
    return None


def purge_recordings(database: Database, data_dir: Path, retention_days: int, now: datetime | None = None) -> int:
    """Delete recordings older than `retention_days` (0 or less keeps them forever). Marks each call
    and writes an audit entry; also removes stray WAVs in the folder past retention. Returns files removed."""
    if retention_days <= 0:
        return 0
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=retention_days)
    root = recordings_dir(data_dir)
    removed = 0
    with database.session() as session:
        for call in expired_recordings(session, cutoff):
            path = recording_file(call, data_dir)
            if path is not None:
                path.unlink(missing_ok=True)
                removed += 1
            call.recording_purged_at = now
            audit(session, "recording_purged", call_id=call.id, detail={"retention_days": retention_days})
        known = {str(p) for p in session.scalars(_live_recording_paths())}
    if root.is_dir():
        cutoff_ts = time.time() - retention_days * 86400
        for wav in root.glob("*.wav"):
            if str(wav) not in known and wav.stat().st_mtime < cutoff_ts:
                wav.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("purged %d recordings older than %d days", removed, retention_days)
    return removed


def _live_recording_paths() -> Select[tuple[str | None]]:
    return select(Call.recording_path).where(Call.recording_path.is_not(None), Call.recording_purged_at.is_(None))
