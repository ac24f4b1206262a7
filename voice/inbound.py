"""The one inbound policy of every transport: caller events queued for the call loop, bounded.

- Caller audio is admitted at real time: a token bucket fills at one second per second up to
  `burst_s` (room for network jitter and a client catching up after a short stall). Audio beyond it
  is dropped and counted, so a client cannot push an hour of audio in ten seconds (issue 10 #3) and
  the recording stays as long as the call.
- The backlog waiting for the loop is bounded (`max_backlog_s`): when the loop is behind, the oldest
  audio goes (the newest matters for barge-in) and is counted too.
- The first drop of a run tells the call: an `AudioDropped` event in the queue (and `on_drop`, for a
  transport that tells its client), once per `notify_every_s`.
- DTMF always gets in; the hang-up always gets in (room is made for it), and nothing after it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from voice.clock import LOOP_CLOCK, Clock
from voice.events import AudioDropped, CallerAudio, CallerHangup, InboundEvent


class InboundQueue:
    def __init__(
        self,
        *,
        burst_s: float = 2.0,
        max_backlog_s: float = 10.0,
        notify_every_s: float = 5.0,
        clock: Clock | None = None,
        on_drop: Callable[[AudioDropped], None] | None = None,
    ) -> None:
        self.clock = clock or LOOP_CLOCK
        self._burst_s = burst_s
        self._max_backlog_s = max_backlog_s
        self._notify_every_s = notify_every_s
        self._on_drop = on_drop
        self._items: deque[InboundEvent] = deque()
        self._backlog_s = 0.0
        self._tokens = burst_s
        self._filled_at: float | None = None
        self._notified_at: float | None = None
        self._ready = asyncio.Event()
        self.hung_up = False
        self.accepted_s = 0.0
        self.dropped_s = 0.0  # too fast (beyond real time) or too far behind (backlog)

    # --- the transport's side ----------------------------------------------------------------
    def put_audio(self, event: CallerAudio) -> bool:
        """Queue caller audio if it keeps within real time; False when it was dropped."""
        if self.hung_up:
            return False
        seconds = event.audio.duration
        now = self.clock.now()
        if self._filled_at is None:
            self._filled_at = now
        self._tokens = min(self._burst_s, self._tokens + (now - self._filled_at))
        self._filled_at = now
        if seconds > self._tokens:
            self._dropped(seconds, "faster than real time")
            return False
        self._tokens -= seconds
        while self._backlog_s + seconds > self._max_backlog_s and self._drop_oldest_audio():
            pass
        self._items.append(event)
        self._backlog_s += seconds
        self.accepted_s += seconds
        self._ready.set()
        return True

    def put(self, event: InboundEvent) -> None:
        """DTMF, a hang-up (or audio, through `put_audio`)."""
        if isinstance(event, CallerAudio):
            self.put_audio(event)
            return
        if self.hung_up:
            return
        if isinstance(event, CallerHangup):
            self.hung_up = True
        self._items.append(event)
        self._ready.set()

    def _drop_oldest_audio(self) -> bool:
        for i, item in enumerate(self._items):
            if isinstance(item, CallerAudio):
                del self._items[i]
                self._backlog_s -= item.audio.duration
                self._dropped(item.audio.duration, "the call loop is behind")
                return True
        return False

    def _dropped(self, seconds: float, why: str) -> None:
        self.dropped_s += seconds
        now = self.clock.now()
        if self._notified_at is None or now - self._notified_at >= self._notify_every_s:
            self._notified_at = now
            notice = AudioDropped(round(self.dropped_s, 3), why)
            self._items.append(notice)
            self._ready.set()
            if self._on_drop is not None:
                self._on_drop(notice)

    # --- the call loop's side ----------------------------------------------------------------
    @property
    def backlog_s(self) -> float:
        return self._backlog_s

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> InboundEvent:
        while not self._items:
            if self.hung_up:
                return CallerHangup("caller hung up")
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if isinstance(item, CallerAudio):
            self._backlog_s -= item.audio.duration
        return item
