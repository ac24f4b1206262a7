"""The one paced output, on virtual time: frames on the clock with a lead, back-pressure, segments,
clear() returning the heard position, the playout-finished signal, markers, idle frames, pull mode, and
hold/release (the bot stopped the moment the caller talks over it, and going on from there)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.voice.virtual_time import run_virtual
from voice.audio import Pcm
from voice.clock import LoopClock
from voice.pacing import PacedOutput


def tone(seconds: float, rate: int = 16000) -> Pcm:
    return Pcm(np.full(round(seconds * rate), 1000, dtype=np.int16), rate)


def now() -> float:
    return asyncio.get_running_loop().time()


def test_frames_leave_on_the_clock_a_lead_ahead_and_clear_returns_what_was_heard() -> None:
    async def main() -> None:
        sent: list[tuple[float, int, bool]] = []

        async def send(frame: Pcm, bot: bool) -> None:
            sent.append((now(), len(frame), bot))

        out = PacedOutput(16000, send=send, lead_s=0.06, max_ahead_s=5.0)
        out.start()
        t0 = now()
        out.begin_segment()
        await out.push(tone(0.6))
        await asyncio.sleep(0.3)
        heard = out.clear()
        n_at_clear = len(sent)
        await asyncio.sleep(0.2)
        await out.close()
        assert all(n == 320 and bot for _, n, bot in sent)
        # 0.3 s of frames plus the lead (3 frames) went out, nothing after the clear
        assert n_at_clear == 15 + 3 + 1
        assert len(sent) == n_at_clear
        assert sent[0][0] == t0 and sent[4][0] == pytest.approx(t0 + 0.02)
        # the caller heard 0.3 s: what was sent less what was still inside the lead
        assert heard == pytest.approx(0.3, abs=0.021)
        assert out.played_s() == pytest.approx(heard)

    run_virtual(main())


def test_back_pressure_holds_the_producer_to_real_time() -> None:
    async def main() -> None:
        async def send(frame: Pcm, bot: bool) -> None:
            return None

        out = PacedOutput(8000, send=send, max_ahead_s=0.2)
        out.start()
        t0 = now()
        for _ in range(10):
            await out.push(tone(0.2, 8000))
        elapsed = now() - t0
        assert 1.45 <= elapsed <= 1.65  # 2 s pushed: at most 0.2 s + one piece (+ the lead) queued ahead
        assert await out.wait_for_playout(5.0)
        assert now() - t0 == pytest.approx(2.0, abs=0.001)  # finished exactly when the last frame played
        await out.close()

    run_virtual(main())


def test_push_nowait_drops_where_push_would_wait_and_queues_the_same_otherwise() -> None:
    async def main() -> None:
        sent: list[Pcm] = []

        async def send(frame: Pcm, bot: bool) -> None:
            sent.append(frame)

        out = PacedOutput(8000, send=send, max_ahead_s=0.2)
        marked: list[int] = []

        async def mark() -> None:
            marked.append(len(sent))

        # not started: nothing leaves, so the queue only fills
        assert out.push_nowait(tone(0.15, 8000), marker=mark)
        assert out.push_nowait(tone(0.1, 8000))  # 0.15 s queued: not over the limit yet
        assert not out.push_nowait(tone(0.1, 8000))  # 0.25 s queued: dropped, never waits
        assert out.queued_s == pytest.approx(0.25)
        waiting = asyncio.ensure_future(out.push(tone(0.1, 8000)))  # the same call that push makes, waiting
        await asyncio.sleep(0)
        assert not waiting.done() and out.queued_s == pytest.approx(0.25)
        out.start()
        await waiting  # room once frames leave on the clock
        assert await out.wait_for_playout(5.0)
        assert sum(int((f.samples != 0).sum()) for f in sent) == round(0.35 * 8000)  # the three that were queued
        assert marked == [8]  # after the frame that finished the first 0.15 s (7.5 frames of 20 ms)
        with pytest.raises(ValueError, match="8000 Hz"):
            out.push_nowait(tone(0.1, 16000))
        await out.close()
        assert not out.push_nowait(tone(0.1, 8000))  # closed: nothing is queued any more
        await out.push(tone(0.1, 8000))  # and push returns at once instead of waiting for room

    run_virtual(main())


def test_playout_signal_waits_for_the_far_end_and_a_remainder_is_padded_at_the_end() -> None:
    async def main() -> None:
        frames: list[Pcm] = []

        async def send(frame: Pcm, bot: bool) -> None:
            frames.append(frame)

        out = PacedOutput(16000, send=send, lead_s=0.06)
        out.start()
        t0 = now()
        out.begin_segment()
        await out.push(tone(0.105))  # 5 frames and a quarter: the quarter waits for more audio
        await asyncio.sleep(0.5)
        assert len(frames) == 5
        assert await out.wait_for_playout(1.0)  # the end of the turn: the remainder goes, padded
        assert len(frames) == 6
        assert np.count_nonzero(frames[-1].samples) == 80
        assert out.played_s() == pytest.approx(out.segment_sent_s)
        assert now() - t0 == pytest.approx(0.52, abs=0.001)  # a new burst at 0.5 s: one frame
        await out.close()

    run_virtual(main())


class EarlyTimerClock(LoopClock):
    """The loop's clock with timed waits that end a millisecond early, as uvloop's millisecond
    timers can (the server runs on uvloop)."""

    async def wait(self, event: asyncio.Event, timeout: float | None) -> bool:
        early = timeout is not None and timeout > 0.002
        return await super().wait(event, timeout - 0.001 if early else timeout)  # type: ignore[operator]


def test_the_playout_signal_comes_even_when_timers_fire_early() -> None:
    async def main() -> None:
        async def send(frame: Pcm, bot: bool) -> None:
            return None

        out = PacedOutput(16000, send=send, lead_s=0.06, clock=EarlyTimerClock())
        out.start()
        for _ in range(3):  # a few turns: each one's end must be seen
            out.begin_segment()
            await out.push(tone(0.5))
            assert await out.wait_for_playout(5.0), "wait_for_playout must not miss the end of a turn"
            assert out.played_s() == pytest.approx(0.5)
        await out.close()

    run_virtual(main())


def test_audio_after_a_clear_continues_the_segment_from_what_was_heard() -> None:
    async def main() -> None:
        async def send(frame: Pcm, bot: bool) -> None:
            return None

        out = PacedOutput(16000, send=send, lead_s=0.06)
        out.start()
        out.begin_segment()
        await out.push(tone(1.0))
        await asyncio.sleep(0.4)
        heard = out.clear()
        await out.push(tone(0.2))
        assert await out.wait_for_playout(1.0)
        assert out.played_s() == pytest.approx(heard + 0.2, abs=0.001)
        out.begin_segment()
        assert out.played_s() == 0.0
        await out.close()

    run_virtual(main())


def test_markers_follow_their_audio_and_raw_items_take_a_slot() -> None:
    async def main() -> None:
        log: list[str] = []

        async def send(frame: Pcm, bot: bool) -> None:
            log.append("audio" if bot else "idle")

        async def send_raw(item: object) -> None:
            log.append(f"raw:{item}")

        def mark(name: str):
            async def run() -> None:
                log.append(f"mark:{name}")
            return run

        out = PacedOutput(8000, send=send, send_raw=send_raw)
        out.start()
        await out.push(tone(0.04, 8000), marker=mark("a"))
        await out.push(tone(0.02, 8000), marker=mark("b"))
        out.push_raw(["d1", "d2"])
        assert await out.wait_for_playout(1.0)
        assert log == ["audio", "audio", "mark:a", "audio", "mark:b", "raw:d1", "raw:d2"]
        await out.close()

    run_virtual(main())


def test_idle_frames_keep_a_phone_stream_flowing() -> None:
    async def main() -> None:
        log: list[tuple[float, bool]] = []

        async def send(frame: Pcm, bot: bool) -> None:
            log.append((now(), bot))

        out = PacedOutput(8000, send=send, idle_frames=True, lead_s=0.04)
        out.start()
        t0 = now()
        await asyncio.sleep(0.1)
        await out.push(tone(0.1, 8000))
        assert await out.wait_for_playout(1.0)
        await asyncio.sleep(0.1)
        await out.close()
        times = [t - t0 for t, _ in log]
        gaps = np.diff(times)
        assert np.allclose(gaps[2:], 0.02, atol=1e-6)  # one steady 20 ms clock, silence or speech
        assert [b for _, b in log].count(True) == 5

    run_virtual(main())


def test_a_stalled_loop_restarts_the_clock_instead_of_bursting() -> None:
    async def main() -> None:
        times: list[float] = []

        async def send(frame: Pcm, bot: bool) -> None:
            times.append(now())
            if len(times) == 10:
                asyncio.get_running_loop().advance(1.0)  # type: ignore[attr-defined]  # a 1 s stall

        out = PacedOutput(16000, send=send, lead_s=0.06)
        out.start()
        await out.push(tone(0.5))
        assert await out.wait_for_playout(5.0)
        await out.close()
        after = np.diff(times[10:])
        assert after.max() <= 0.0201 and (after == 0).sum() <= 3  # at most the lead goes at once

    run_virtual(main())


def test_pull_mode_hands_out_frames_on_the_clock_and_silence_when_idle() -> None:
    async def main() -> None:
        out = PacedOutput(48000, lead_s=0.0)
        t0 = now()
        await out.push(tone(0.04, 48000))
        frames = [await out.pull_frame() for _ in range(5)]
        assert [np.count_nonzero(f.samples) for f in frames] == [960, 960, 0, 0, 0]
        assert now() - t0 == pytest.approx(0.08)
        assert await out.wait_for_playout(0.1)  # the audio was played; only silence followed

    run_virtual(main())


def test_a_hold_stops_the_frames_at_once_and_release_goes_on_where_it_stopped() -> None:
    async def main() -> None:
        sent: list[tuple[float, bool]] = []

        async def send(frame: Pcm, bot: bool) -> None:
            sent.append((now(), bot))

        out = PacedOutput(16000, send=send, lead_s=0.06, max_ahead_s=5.0)
        out.start()
        t0 = now()
        out.begin_segment()
        await out.push(tone(1.0))
        await asyncio.sleep(0.3)
        out.hold()
        n_at_hold = len(sent)
        await asyncio.sleep(0.5)
        assert len(sent) == n_at_hold  # nothing while held (what was sent, within the lead, still plays)
        assert out.played_s() == pytest.approx(n_at_hold * 0.02)  # ...and the heard position stops there
        assert not await out.wait_for_playout(0.1)  # the held audio is still to be played
        out.release()
        assert await out.wait_for_playout(2.0)
        await out.close()
        assert len(sent) == 50  # every frame of the second, none lost, none twice
        resumed = sent[n_at_hold][0] - t0
        assert resumed == pytest.approx(0.9, abs=0.001)  # at once when released

    run_virtual(main())


def test_pull_mode_holds_with_silence_and_a_clear_ends_the_hold() -> None:
    async def main() -> None:
        out = PacedOutput(48000, lead_s=0.0)
        await out.push(tone(0.1, 48000))
        first = await out.pull_frame()
        out.hold()
        held = [await out.pull_frame() for _ in range(3)]
        out.release()
        after = await out.pull_frame()
        assert np.count_nonzero(first.samples) == 960 and np.count_nonzero(after.samples) == 960
        assert [np.count_nonzero(f.samples) for f in held] == [0, 0, 0]
        out.hold()
        out.clear()  # a barge-in: the queue is dropped and the next reply plays without a release
        assert not out.held
        await out.push(tone(0.02, 48000))
        assert np.count_nonzero((await out.pull_frame()).samples) == 960

    run_virtual(main())


def test_only_integer_rates() -> None:
    with pytest.raises(ValueError):
        PacedOutput(16000.0)  # type: ignore[arg-type]
