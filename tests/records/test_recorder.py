"""The CallRecorder against a real database (SQLite and PostgreSQL): every turn is committed as
it happens, red flags at once, the result at the end, and the event loop never waits."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from records.db import open_database
from records.models import Call, RedFlag, Turn
from records.recorder import CallRecorder, close_interrupted_calls
from tests.records.simulate import SQL, XSS, triage_call
from voice.events import CallEnded, TurnRecorded


def _fresh_view(db_url: str):
    """A second engine: sees only what the recorder committed, like a restarted server would."""
    return open_database(db_url)


async def test_turns_are_committed_as_they_happen(database, db_url):
    recorder = CallRecorder(database)
    viewer = _fresh_view(db_url)
    try:
        seen_turns = []
        for event in triage_call("call-live"):
            if isinstance(event, CallEnded):
                break
            await recorder.on_event(event)
            await recorder.flush()
            with viewer.session() as s:
                count = s.scalar(select(func.count()).select_from(Turn).where(Turn.call_id == "call-live"))
                call = s.get(Call, "call-live")
                assert call is not None and call.status == "in_progress"
            if isinstance(event, TurnRecorded):
                seen_turns.append(count)
        assert seen_turns == [1, 2, 3, 4, 5], "each finished turn is on disk before the next one"
        with viewer.session() as s:
            flags = s.scalars(select(RedFlag.flag).where(RedFlag.call_id == "call-live")).all()
            assert flags == ["chest_pain_radiating"], "the red flag is stored before the call ends"
            assert s.get(Call, "call-live").has_red_flags
    finally:
        await recorder.aclose()
        viewer.dispose()


async def test_call_end_stores_result_findings_summary_and_recording(database, db_url):
    recorder = CallRecorder(database)
    for event in triage_call("call-end", recording="/data/recordings/call-end.wav"):
        await recorder.on_event(event)
    await recorder.aclose()
    from records.repository import get_call

    with database.session() as s:
        call = get_call(s, "call-end")
        assert call.status == "ended" and call.end_reason == "completed"
        assert call.disposition == "emergency_ambulance" and call.department == "Emergency"
        assert call.chief_complaint == "chest pain"
        assert call.summary["situation"].startswith("Chest pain")
        assert call.recording_path == "/data/recordings/call-end.wav"
        assert [t.speaker for t in call.turns] == ["bot", "caller", "bot", "caller", "bot"]
        assert XSS in call.turns[1].text and SQL in call.turns[3].text  # stored verbatim, as data
        assert call.turns[2].voice_to_voice_ms == pytest.approx(932.0)
        assert [(f.name, f.value, f.turn_idx) for f in call.findings] == [
            ("chest_pain", "yes", 1),
            ("sweating", "yes", 3),
        ]
        assert SQL in call.findings[1].evidence
        assert [r.flag for r in call.red_flags] == ["chest_pain_radiating"]  # not duplicated by the result
        assert call.red_flags[0].turn_idx == 3


async def test_on_event_waits_only_for_a_finished_turn_and_never_blocks_the_loop(database):
    """The call loop tells the caller a turn is final only once `on_event` returned (issue 10 #6):
    a turn's event returns once it is committed; other events at once; the loop runs meanwhile."""
    recorder = CallRecorder(database)
    slow_write = recorder.write

    def write(event):
        time.sleep(0.3)  # a slow disk or a busy PostgreSQL
        slow_write(event)

    recorder.write = write  # type: ignore[method-assign]
    events = triage_call("call-slow")
    loop_ticks = 0

    async def ticker():
        nonlocal loop_ticks
        while True:
            await asyncio.sleep(0.01)
            loop_ticks += 1

    task = asyncio.create_task(ticker())
    for event in events:
        started = time.perf_counter()
        await recorder.on_event(event)
        waited = time.perf_counter() - started
        if isinstance(event, TurnRecorded):
            assert waited >= 0.25  # stored before it returned
            with database.session() as s:
                assert any(t.idx == event.turn.index for t in s.get(Call, "call-slow").turns)
        else:
            assert waited < 0.1
    await recorder.aclose()
    task.cancel()
    assert loop_ticks > 20, "the event loop kept running while the writer worked"
    with database.session() as s:
        assert s.get(Call, "call-slow").status == "ended"


async def test_events_for_a_call_whose_start_was_missed(database):
    recorder = CallRecorder(database)
    events = triage_call("call-late")[2:]  # recorder attached mid-call
    for event in events:
        await recorder.on_event(event)
    await recorder.aclose()
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Turn).where(Turn.call_id == "call-late")) == 5


async def test_live_feed_pushes_red_flags_at_once(database):
    recorder = CallRecorder(database)
    queue = recorder.feed.subscribe()
    events = triage_call("call-feed")
    for event in events[:-1]:
        await recorder.on_event(event)
    messages = [queue.get_nowait() for _ in range(queue.qsize())]
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "call_started" and "red_flag" in kinds and kinds.count("turn") == 5
    flag = next(m for m in messages if m["type"] == "red_flag")
    assert flag["flags"] == ["chest_pain_radiating"] and flag["call_id"] == "call-feed"
    assert recorder.feed.snapshot()[0]["red_flags"] == ["chest_pain_radiating"]
    await recorder.on_event(events[-1])
    assert recorder.feed.calls == {}
    assert queue.get_nowait()["type"] == "call_ended"
    recorder.feed.unsubscribe(queue)
    await recorder.aclose()


async def test_calls_cut_off_by_a_stopped_server_are_closed_with_their_turns(database, tmp_path):
    recorder = CallRecorder(database)
    for event in triage_call("call-cut")[:6]:
        await recorder.on_event(event)
    await recorder.aclose()
    wav = tmp_path / "recordings" / "call-cut.wav"
    wav.parent.mkdir()
    wav.write_bytes(b"RIFF")
    closed = close_interrupted_calls(database, wav.parent)
    with database.session() as s:
        call = s.get(Call, "call-cut")
        turns = s.scalar(select(func.count()).select_from(Turn).where(Turn.call_id == "call-cut"))
    if database.dialect == "sqlite":
        assert closed == 1 and call.status == "ended" and call.recording_path == str(wav)
    else:  # other workers may hold live calls: left alone while they are active
        assert closed == 0 and call.status == "in_progress"
        assert close_interrupted_calls(database, wav.parent, idle_s=1800) == 0
        with database.session() as s:
            old = datetime.now(UTC) - timedelta(hours=1)
            s.get(Call, "call-cut").started_at = old
            for t in s.scalars(select(Turn).where(Turn.call_id == "call-cut")):
                t.recorded_at = old
        assert close_interrupted_calls(database, wav.parent, idle_s=1800) == 1
        with database.session() as s:
            call = s.get(Call, "call-cut")
            assert call.status == "ended" and call.end_reason == "server stopped during the call"
    assert turns >= 2


async def test_a_database_outage_delays_turns_but_loses_none(database):
    from sqlalchemy.exc import OperationalError

    recorder = CallRecorder(database)
    real_write = recorder.write
    outage = {"left": 4}

    def write(event):
        if outage["left"]:
            outage["left"] -= 1
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        real_write(event)

    recorder.write = write  # type: ignore[method-assign]
    for event in triage_call("call-outage"):
        await recorder.on_event(event)
    await recorder.aclose()
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Turn).where(Turn.call_id == "call-outage")) == 5
        assert s.get(Call, "call-outage").status == "ended"


async def test_one_bad_event_does_not_stop_the_record(database):
    recorder = CallRecorder(database)
    real_write = recorder.write

    def write(event):
        if isinstance(event, TurnRecorded) and event.turn.index == 1:
            raise ValueError("a bug in one event")
        real_write(event)

    recorder.write = write  # type: ignore[method-assign]
    for event in triage_call("call-bug"):
        await recorder.on_event(event)
    await recorder.aclose()
    with database.session() as s:
        idx = s.scalars(select(Turn.idx).where(Turn.call_id == "call-bug").order_by(Turn.idx)).all()
        assert idx == [0, 2, 3, 4] and s.get(Call, "call-bug").status == "ended"


async def test_a_turn_the_database_cannot_confirm_in_time_is_told_as_not_yet_stored(database):
    """Issue 10 #6: a finished turn is committed before the client is told it is final, or the
    event says it is not stored yet; the turn is still stored once the database answers."""
    import threading
    from dataclasses import replace

    from voice.events import TurnRecorded
    from voice.wire import event_to_json

    recorder = CallRecorder(database)
    real_write = recorder.write
    disk_answers = threading.Event()
    slow = {"on": False}

    def write(event):
        if slow["on"] and isinstance(event, TurnRecorded):
            assert disk_answers.wait(30)  # (in the writer thread) a disk that has not answered yet
        real_write(event)

    recorder.write = write  # type: ignore[method-assign]
    answers = []
    turns = []
    for event in triage_call("call-slow"):
        if isinstance(event, CallEnded):
            break
        if isinstance(event, TurnRecorded):
            slow["on"] = len(turns) == 2  # the third turn meets a disk slower than the wait
            recorder.commit_wait_s = 0.05 if slow["on"] else 30.0
            turns.append(event)
            answers.append(await recorder.on_event(event))  # what CallHub.publish passes on
            if slow["on"]:
                disk_answers.set()  # the disk answers only after the wait gave up
        else:
            await recorder.on_event(event)
    assert answers == [True, True, False, True, True]
    assert "stored" not in event_to_json(turns[0])
    assert event_to_json(replace(turns[2], stored=False))["stored"] is False
    await recorder.aclose()
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(Turn).where(Turn.call_id == "call-slow")) == 5
