"""A real-time frame clock for phone transports: 20 ms frames out on a steady schedule, a small lead
ahead of real time, with in-order callbacks (Media Streams marks) between frames.

Unlike a plain audio queue it keeps markers in sequence with the audio they follow, which is what
mark-based playback tracking needs, and it can fill idle time with a silence frame (RTP streams
keep flowing; Media Streams simply pause).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

Marker = Callable[[], Awaitable[None]]  # anything callable in the queue is a marker; the rest are frames


class FramePacer:
    def __init__(
        self,
        send: Callable[[Any, bool], Awaitable[None]],
        *,
        frame_s: float = 0.02,
        lead_s: float = 0.06,
        idle_frame: bytes | None = None,
    ) -> None:
        """`send(frame, is_bot_audio)`; `idle_frame` is sent when nothing is queued (None: send nothing)."""
        self._send = send
        self.frame_s = frame_s
        self.lead_s = lead_s
        self._idle = idle_frame
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self.frames_sent = 0  # bot audio frames
        self.talkspurt_start = True  # the next bot frame begins a talkspurt (RTP marker bit)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="frame-pacer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            except Exception:  # the send failed as the peer went away: nothing left to do
                pass
            self._task = None
        self._drained.set()

    def push(self, frames: list[Any], marker: Marker | None = None) -> None:
        self._items.extend(frames)
        if marker is not None:
            self._items.append(marker)
        if self._items:
            self._drained.clear()
            self._ready.set()

    def clear(self) -> float:
        """Drop queued frames and markers; returns the seconds of audio dropped."""
        dropped = sum(1 for i in self._items if not callable(i))
        self._items.clear()
        self._drained.set()
        self.talkspurt_start = True
        return dropped * self.frame_s

    @property
    def queued_s(self) -> float:
        return sum(1 for i in self._items if not callable(i)) * self.frame_s

    async def drained(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        deadline = time.monotonic()
        while True:
            if not self._items and self._idle is None:
                self._drained.set()
                self._ready.clear()
                await self._ready.wait()
                deadline = max(deadline, time.monotonic())
                continue
            # a frame is due at `deadline`; it may go out up to `lead_s` early
            wait = deadline - self.lead_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            # run markers that are at the head (they follow audio already sent)
            while self._items and callable(self._items[0]):
                marker = self._items.popleft()
                await marker()
            if self._items:
                frame = self._items.popleft()
                await self._send(frame, True)
                self.frames_sent += 1
                self.talkspurt_start = False
                if not self._items:
                    self._drained.set()
            elif self._idle is not None:
                self._drained.set()
                self.talkspurt_start = True
                await self._send(self._idle, False)
            else:
                continue
            deadline += self.frame_s
            late = time.monotonic() - deadline
            if late > 0.5:  # the loop stalled (a blocked event loop); do not burst to catch up
                deadline = time.monotonic()
