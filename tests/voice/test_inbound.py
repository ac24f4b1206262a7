"""The one inbound policy, on virtual time: audio admitted at real time (excess dropped, counted and
told), a bounded backlog, DTMF and the hang-up always delivered."""

from __future__ import annotations

import asyncio

import pytest

from tests.voice.virtual_time import run_virtual
from voice.audio import Pcm
from voice.events import AudioDropped, CallerAudio, CallerHangup, Dtmf
from voice.inbound import InboundQueue


def frame(seconds: float = 0.02) -> CallerAudio:
    return CallerAudio(Pcm.silence(seconds, 16000))


def test_an_hour_of_audio_in_ten_seconds_is_not_accepted() -> None:
    async def main() -> None:
        told: list[AudioDropped] = []
        q = InboundQueue(burst_s=2.0, max_backlog_s=1000.0, on_drop=told.append)
        # 62 minutes of 20 ms frames over 10 s (issue 10 #3)
        frames = int(62 * 60 / 0.02)
        per_tick = frames // 1000
        for _ in range(1000):
            for _ in range(per_tick):
                q.put_audio(frame())
            await asyncio.sleep(0.01)
        assert q.accepted_s == pytest.approx(12.0, abs=0.1)  # 10 s of real time + the 2 s burst
        assert q.dropped_s > 3700
        assert 1 <= len(told) <= 3  # told once per 5 s, not once per frame
        kinds = []
        while len(q):
            kinds.append(type(await q.get()))
        assert kinds.count(AudioDropped) == len(told)

    run_virtual(main())


def test_real_time_audio_is_never_dropped_even_with_jitter() -> None:
    async def main() -> None:
        q = InboundQueue()
        for i in range(500):  # 10 s, in bunches of five frames every 100 ms
            q.put_audio(frame())
            if i % 5 == 4:
                await asyncio.sleep(0.1)
                while len(q):
                    await q.get()
        assert q.dropped_s == 0 and q.accepted_s == pytest.approx(10.0)

    run_virtual(main())


def test_a_stalled_loop_keeps_the_newest_audio_and_the_hangup_gets_through() -> None:
    async def main() -> None:
        q = InboundQueue(max_backlog_s=0.1, burst_s=100.0)
        for i in range(10):
            q.put_audio(CallerAudio(Pcm.silence(0.02 * (i + 1), 16000)))
        q.put(Dtmf("5"))
        q.put(CallerHangup("caller hung up"))
        q.put_audio(frame())  # nothing after the hang-up
        got = []
        while True:
            ev = await q.get()
            got.append(ev)
            if isinstance(ev, CallerHangup):
                break
        audio = [e for e in got if isinstance(e, CallerAudio)]
        assert [round(a.audio.duration, 2) for a in audio] == [0.2]  # the newest piece (alone over the bound)
        assert any(isinstance(e, AudioDropped) for e in got)
        assert isinstance(got[-2], Dtmf)
        assert isinstance(await q.get(), CallerHangup)  # and again, for a loop that asks twice

    run_virtual(main())
