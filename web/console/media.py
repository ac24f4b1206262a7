"""Serving a recording with HTTP range requests (so the audio player can seek) and the live
feed as server-sent events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from records.live import LiveFeed

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(start, end inclusive) for one satisfiable range; None without a usable header; False when
    unsatisfiable (416). Multiple ranges are answered with the whole file (allowed by RFC 9110)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m:
        return None
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return False
    return start, min(end, size - 1)


def _read(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    return gen()


def file_response(path: Path, range_header: str | None, media_type: str = "audio/wav") -> Response:
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store"}
    rng = parse_range(range_header, size)
    if rng is False:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    if rng is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = rng, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    return StreamingResponse(_read(path, start, end), status_code=status, headers=headers, media_type=media_type)


def sse(feed: LiveFeed, request: Request, heartbeat_s: float = 15.0, once: bool = False) -> StreamingResponse:
    """Live calls as server-sent events: a snapshot first, then each change as it happens."""

    def frame(message: dict[str, Any]) -> bytes:
        return f"event: {message['type']}\ndata: {json.dumps(message, ensure_ascii=False)}\n\n".encode()

    async def stream() -> AsyncIterator[bytes]:
        queue = feed.subscribe()
        try:
            yield b"retry: 2000\n\n"
            yield frame({"type": "snapshot", "calls": feed.snapshot()})
            if once:
                return
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=heartbeat_s)
                except TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield b": keep-alive\n\n"
                    continue
                yield frame(message)
        finally:
            feed.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
