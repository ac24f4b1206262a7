"""The one paced output every transport plays bot audio through (WebSocket, WebRTC, Media Streams,
RTP): 20 ms frames on one clock, a small lead ahead of real time so the far end's jitter buffer never
starves, back-pressure on the producer, segments (one per bot turn) whose played position the call
loop reads, and a playout-finished signal instead of polling.

- `push(audio)` queues audio (waits while more than `max_ahead_s` is queued). A remainder shorter
  than a frame waits for the next piece, so no silence is slipped inside a reply; `flush()` (or
  `wait_for_playout()`) pads it out at the end of a turn.
- `begin_segment()` starts a bot turn: `played_s()` counts from 0 again.
- `clear()` drops everything not yet sent (barge-in) and returns what the caller heard of the
  segment; audio pushed afterwards continues the segment from there.
- `hold()` stops sending at the next frame and keeps what is queued; `release()` goes on from there.
  The call holds the bot the moment the caller starts speaking over it, before it knows whether
  that speech is a barge-in (then `clear()`, which also releases) or a backchannel (then `release()`).
- `wait_for_playout()` returns once everything pushed has been played at the far end (sent, plus the
  lead it was sent ahead of time), or was cleared.
- Markers (`push(..., marker=...)`) run in order once the audio before them is on the wire (Media
  Streams `mark` messages); raw items (`push_raw`) take one frame slot each (RTP DTMF packets).

Push mode (a task sends each frame through `send`) serves WebSocket, Media Streams and RTP; pull mode
(`pull_frame()`, silence when idle) serves aiortc, whose track asks for frames itself. After a stall
of the event loop longer than `stall_s` the clock restarts rather than bursting to catch up: one
threshold for every transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from voice.audio import Pcm
from voice.clock import LOOP_CLOCK, Clock

Marker = Callable[[], Awaitable[None]]
SendFrame = Callable[[Pcm, bool], Awaitable[None]]  # (frame, is_bot_audio); False: an idle silence frame
SendRaw = Callable[[object], Awaitable[None]]

STALL_S = 0.25  # the loop fell this far behind: restart the clock (no burst)


@dataclass(slots=True)
class _Positioned:
    pos: int  # absolute sample position in the pushed stream
    item: object


class PacedOutput:
    def __init__(
        self,
        sample_rate: int,
        *,
        send: SendFrame | None = None,
        send_raw: SendRaw | None = None,
        frame_ms: int = 20,
        lead_s: float = 0.06,
        max_ahead_s: float = 1.0,
        idle_frames: bool = False,
        stall_s: float = STALL_S,
        clock: Clock | None = None,
        name: str = "paced-output",
    ) -> None:
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.frame_s = self.frame_samples / sample_rate
        self.lead_s = lead_s
        self.clock = clock or LOOP_CLOCK
        self._send = send
        self._send_raw = send_raw
        self._max_ahead = int(max_ahead_s * sample_rate)
        self._idle_frames = idle_frames
        self._stall_s = stall_s
        self._name = name
        self._audio: deque[np.ndarray] = deque()
        self._pushed = 0  # samples pushed, absolute
        self._taken = 0  # samples sent (or dropped by clear), absolute
        self._flush_to = 0  # partial frames before this position may be padded
        self._marks: deque[_Positioned] = deque()
        self._raw: deque[_Positioned] = deque()
        self._wake = asyncio.Event()  # something was pushed or cleared
        self._space = asyncio.Event()
        self._space.set()
        self._played_out = asyncio.Event()
        self._played_out.set()
        self._due: float | None = None  # when the next frame should start playing at the far end
        self._play_end = 0.0  # when the last frame sent ends playing at the far end
        # the current segment (bot turn)
        self._seg_sent_s = 0.0
        self._receipt: tuple[float, float] | None = None  # (segment position confirmed played, at)
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.held = False  # hold(): nothing is sent (idle frames still are) until release() or clear()
        self.frames_sent = 0  # bot audio frames
        self.talkspurt_start = True  # the next bot frame begins a talkspurt (RTP marker bit)

    # --- lifetime ----------------------------------------------------------------------------
    def start(self) -> None:
        """Push mode: a task sends frames through `send` on the clock."""
        if self._send is None:
            raise RuntimeError("push mode needs a send callback")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def close(self) -> None:
        self.closed = True
        self._drop()
        self._wake.set()
        self._space.set()
        self._played_out.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task  # a send that failed as the peer went away: nothing left to do
            self._task = None

    # --- producer side -----------------------------------------------------------------------
    async def push(self, audio: Pcm, marker: Marker | None = None) -> None:
        """Queue bot audio; waits while more than `max_ahead_s` is queued (back-pressure on TTS)."""
        while not self.push_nowait(audio, marker) and not self.closed:
            self._space.clear()
            await self._space.wait()

    def push_nowait(self, audio: Pcm, marker: Marker | None = None) -> bool:
        """Queue audio without waiting; False (not queued) while more than `max_ahead_s` is queued or
        once closed. Live relays (a nurse hearing the caller) that must never fall behind drop it."""
        if audio.sample_rate != self.sample_rate:
            raise ValueError(f"this output plays {self.sample_rate} Hz audio, got {audio.sample_rate} Hz")
        if self.closed or self._pushed - self._taken > self._max_ahead:
            return False
        if len(audio):
            self._audio.append(audio.samples)
            self._pushed += len(audio.samples)
        if marker is not None:
            self._marks.append(_Positioned(self._pushed, marker))
        self._queued_something()
        return True

    def push_raw(self, items: list[object]) -> None:
        """Items that take one frame slot each after the audio pushed so far (e.g. DTMF packets)."""
        if self.closed:
            return
        self.flush()
        for item in items:
            self._raw.append(_Positioned(self._pushed, item))
        self._queued_something()

    def flush(self) -> None:
        """The end of a piece: a remainder shorter than a frame goes out padded with silence."""
        self._flush_to = self._pushed
        self._wake.set()

    def _queued_something(self) -> None:
        if self._pushed > self._taken or self._raw or self._marks:
            self._played_out.clear()
        self._wake.set()

    def begin_segment(self) -> None:
        """A new bot turn: `played_s()` counts from here."""
        self._seg_sent_s = 0.0
        self._receipt = None
        self._play_end = min(self._play_end, self.clock.now())

    def hold(self) -> None:
        """Send nothing more (queued audio waits; pull mode and idle frames give silence) until
        `release()` or `clear()`. What is already sent still plays: at most the lead."""
        self.held = True

    def release(self) -> None:
        """Go on sending what `hold()` kept, from where it stopped."""
        if self.held:
            self.held = False
            self._wake.set()

    def clear(self) -> float:
        """Drop everything not yet sent (a hold ends with it); returns the seconds of this segment the
        caller heard. Audio pushed afterwards continues the segment from that position."""
        heard = self.played_s()
        self.held = False
        self._drop()
        self._seg_sent_s = heard
        self._receipt = None
        self._play_end = self.clock.now()
        self._played_out.set()
        return heard

    def _drop(self) -> None:
        self._audio.clear()
        self._marks.clear()
        self._raw.clear()
        self._taken = self._pushed
        self._flush_to = self._pushed
        self._space.set()
        self._wake.set()
        self.talkspurt_start = True

    def confirm_played(self, segment_s: float) -> None:
        """A playback receipt from the far end (a Media Streams mark echo): this much of the
        segment has been heard."""
        if self._receipt is None or segment_s > self._receipt[0]:
            self._receipt = (min(segment_s, self._seg_sent_s), self.clock.now())

    # --- what the caller heard ---------------------------------------------------------------
    @property
    def queued_s(self) -> float:
        return (self._pushed - self._taken) / self.sample_rate

    @property
    def segment_sent_s(self) -> float:
        return self._seg_sent_s

    def played_s(self) -> float:
        """Seconds of this segment the caller has heard: sent, less what is still inside the lead;
        with receipts, no further than the last receipt plus the time since."""
        now = self.clock.now()
        estimate = max(0.0, self._seg_sent_s - max(0.0, self._play_end - now))
        if self._receipt is not None:
            pos, at = self._receipt
            estimate = max(pos, min(estimate, pos + (now - at)))
        return estimate

    async def wait_for_playout(self, timeout: float | None = None) -> bool:
        """Until everything pushed has been played (or cleared); False if `timeout` passed first."""
        self.flush()
        return await self.clock.wait(self._played_out, timeout)

    # --- the frame clock ---------------------------------------------------------------------
    def _audio_ready(self) -> int:
        """Samples of the next audio frame that may go now (0: none)."""
        avail = self._pushed - self._taken
        if avail >= self.frame_samples:
            return self.frame_samples
        return avail if avail > 0 and self._flush_to > self._taken else 0

    def _take(self, n: int) -> np.ndarray:
        out = np.zeros(self.frame_samples, dtype=np.int16)
        filled = 0
        while filled < n and self._audio:
            chunk = self._audio[0]
            k = min(n - filled, len(chunk))
            out[filled : filled + k] = chunk[:k]
            filled += k
            if k == len(chunk):
                self._audio.popleft()
            else:
                self._audio[0] = chunk[k:]
        self._taken += filled
        if self._pushed - self._taken <= self._max_ahead:
            self._space.set()
        return out

    def _next_item(self) -> tuple[str, object] | None:
        """What goes in the next frame slot, if anything is ready (nothing while held)."""
        if self.held:
            return None
        if self._raw and self._raw[0].pos <= self._taken:
            return "raw", self._raw.popleft().item
        n = self._audio_ready()
        if n:
            return "audio", Pcm(self._take(n), self.sample_rate)
        return None

    async def _run_marks(self) -> None:
        while self._marks and self._marks[0].pos <= self._taken:
            marker = self._marks.popleft().item
            await marker()  # type: ignore[operator]

    def _pending(self) -> bool:
        return self._pushed > self._taken or bool(self._raw) or bool(self._marks)

    def _ready(self) -> bool:
        if self.held:
            return False
        return bool(self._raw and self._raw[0].pos <= self._taken) or self._audio_ready() > 0

    def _check_played_out(self) -> None:
        if not self._pending() and self.clock.now() >= self._play_end:
            self._played_out.set()
            self.talkspurt_start = True

    async def _wait_due(self) -> None:
        now = self.clock.now()
        if self._due is None:  # a new burst: continue right after what the far end still plays
            self._due = max(now, self._play_end)
        elif now - (self._due - self.lead_s) > self._stall_s:  # the loop stalled: no burst to catch up
            self._due = now
        wait = self._due - self.lead_s - now
        if wait > 0:
            await self.clock.sleep(wait)

    def _advance(self, audio: bool) -> None:
        assert self._due is not None
        if audio:
            self._seg_sent_s += self.frame_s
            self._play_end = self._due + self.frame_s
            self.frames_sent += 1
            self.talkspurt_start = False
        self._due += self.frame_s

    async def _run(self) -> None:
        assert self._send is not None
        while not self.closed:
            await self._run_marks()
            if self._ready():
                await self._wait_due()
                item = self._next_item()  # (a clear may have come while we waited)
                if item is None:
                    continue
                kind, payload = item
                if kind == "raw":
                    if self._send_raw is not None:
                        await self._send_raw(payload)
                else:
                    assert isinstance(payload, Pcm)
                    await self._send(payload, True)
                self._advance(kind == "audio")
                continue
            if self._idle_frames:  # phone streams keep flowing: silence on the clock
                self._check_played_out()
                await self._wait_due()
                if self._ready() or self.closed:
                    continue
                await self._send(Pcm.silence(self.frame_s, self.sample_rate), False)
                self._advance(False)
                continue
            self._due = None  # the queue ran dry: the next audio starts a new burst
            if not self._pending():
                left = self._play_end - self.clock.now()
                if left > 0:
                    # Look again after the wait, woken or not: a timer may fire a little early
                    # (uvloop rounds to the millisecond), and a played-out check that missed the
                    # end by that much would leave wait_for_playout() waiting for ever.
                    self._wake.clear()
                    await self.clock.wait(self._wake, left)
                    continue
                self._check_played_out()
            self._wake.clear()
            if not self._ready():
                await self._wake.wait()

    async def pull_frame(self) -> Pcm:
        """Pull mode (aiortc): the next frame when it is due, silence when nothing is queued."""
        await self._wait_due()
        await self._run_marks()
        item = self._next_item()
        if item is not None and item[0] == "audio":
            frame = item[1]
            assert isinstance(frame, Pcm)
            self._advance(True)
            return frame
        self._advance(False)
        self._check_played_out()
        return Pcm.silence(self.frame_s, self.sample_rate)
