"""Real-time pacing of bot audio for transports that push frames (WebSocket, Media Streams, RTP).

Audio is cut into fixed frames and sent on a steady clock, a small lead ahead of real time so the
far end's jitter buffer never starves. `clear()` drops everything not yet sent: on barge-in the
caller stops hearing the bot within one frame plus the lead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from voice.audio import Pcm


class PacedSender:
    def __init__(
        self,
        send_frame: Callable[[Pcm], Awaitable[None]],
        sample_rate: int,
        *,
        frame_ms: int = 20,
        lead_ms: int = 60,
        max_queued_s: float = 1.0,
        pad_last_frame: bool = True,
    ) -> None:
        self._send_frame = send_frame
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._frame_s = frame_ms / 1000
        self._lead_s = lead_ms / 1000
        self._max_queued = int(max_queued_s * sample_rate)
        self._pad = pad_last_frame
        self._queue = np.zeros(0, dtype=np.int16)
        self._space = asyncio.Event()
        self._space.set()
        self._ready = asyncio.Event()
        self._sent_samples = 0
        self._sent_at: list[float] = []  # send time of recent frames, to discount the lead
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.frames_sent = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="paced-sender")

    async def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._space.set()
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def push(self, audio: Pcm) -> None:
        """Queue audio; waits while more than `max_queued_s` is waiting (back-pressure on TTS)."""
        if audio.sample_rate != self.sample_rate:
            raise ValueError(f"sender expects {self.sample_rate} Hz, got {audio.sample_rate} Hz")
        while len(self._queue) > self._max_queued and not self._closed:
            self._space.clear()
            await self._space.wait()
        self._queue = np.concatenate([self._queue, audio.samples])
        self._ready.set()

    def clear(self) -> float:
        """Drop what is queued; returns the seconds dropped."""
        dropped = len(self._queue) / self.sample_rate
        self._queue = np.zeros(0, dtype=np.int16)
        self._space.set()
        return dropped

    def reset_played(self) -> None:
        self._sent_samples = 0

    @property
    def queued_s(self) -> float:
        return len(self._queue) / self.sample_rate

    def played_s(self) -> float:
        """Seconds the far end has played: sent minus what is still inside the lead."""
        now = time.monotonic()
        in_flight = sum(1 for t in self._sent_at if now - t < self._lead_s)
        return max(0.0, self._sent_samples / self.sample_rate - in_flight * self._frame_s)

    async def _run(self) -> None:
        next_at = time.monotonic()
        while not self._closed:
            if len(self._queue) == 0:
                self._ready.clear()
                await self._ready.wait()
                # a new burst: allow the lead to be sent at once
                next_at = time.monotonic() - self._lead_s
                continue
            frame = self._queue[: self.frame_samples]
            self._queue = self._queue[self.frame_samples :]
            if len(frame) < self.frame_samples and self._pad:
                frame = np.concatenate([frame, np.zeros(self.frame_samples - len(frame), dtype=np.int16)])
            if len(self._queue) <= self._max_queued:
                self._space.set()
            await self._send_frame(Pcm(frame, self.sample_rate))
            now = time.monotonic()
            self._sent_samples += len(frame)
            self.frames_sent += 1
            self._sent_at.append(now)
            if len(self._sent_at) > 64:
                del self._sent_at[:32]
            next_at += self._frame_s
            delay = next_at - now
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.5:  # we fell far behind (loaded machine): don't burst to catch up
                next_at = now
