"""`CallRecorder`: the call observer that keeps the record. Every event is written in its own
transaction as it happens (a finished turn is on disk before the next one starts), on one writer
thread fed by a queue, so the event loop and the audio path never wait for the database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from records.db import Database
from records.live import LiveFeed
from records.models import Call, Finding, FollowupOutcome, RedFlag, Turn, urgency_rank
from records.results import record_rows
from voice.conversation import Escalate, Outcome
from voice.events import ActionTaken, CallEnded, CallEvent, CallStarted, TurnRecorded
from voice.result import CallResult, Progress

log = logging.getLogger("carecall.records.recorder")

_STORED = (CallStarted, TurnRecorded, ActionTaken, CallEnded)  # state and partials stay in memory
_RETRIES = 3


class CallRecorder:
    """Implements `voice.ports.CallObserver`. `on_event` returns at once; `flush()` waits until
    everything received so far is committed; `aclose()` flushes and stops the writer."""

    def __init__(self, database: Database, feed: LiveFeed | None = None) -> None:
        self.database = database
        self.feed = feed if feed is not None else LiveFeed()
        self._queue: asyncio.Queue[CallEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="records-writer")
        self._commits: dict[int, asyncio.Future[None]] = {}  # finished turns waiting for their commit
        self.commit_wait_s = 2.0

    async def on_event(self, event: CallEvent) -> bool | None:
        self.feed.apply(event)  # console viewers first: a red flag must not wait for a disk
        if not isinstance(event, _STORED):
            return None
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._writer(), name="records-writer")
        assert self._queue is not None
        self._queue.put_nowait(event)
        if isinstance(event, TurnRecorded):
            # a finished turn is on disk before the caller's client is told it is final (issue 10 #6):
            # the call loop tells the client only after this returns; a database that is down only
            # delays that by `commit_wait_s`
            done = self._commits[id(event)] = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), self.commit_wait_s)
            return done.done()  # False: the client is told the turn is not stored yet
        return None

    async def flush(self) -> None:
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self, timeout_s: float = 15.0) -> None:
        """Store what is queued (waiting at most `timeout_s` for a database that is down), then stop."""
        try:
            await asyncio.wait_for(self.flush(), timeout_s)
        except TimeoutError:
            lost = self._queue.qsize() if self._queue else 0
            log.error("records database unavailable at shutdown: %d call events were not stored", lost)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def _writer(self) -> None:
        """Writes events in order. While the database is unreachable it keeps retrying (the events
        wait in memory, in order); an event that fails for any other reason is tried a few times,
        then logged and skipped so that one bad event cannot stop the record of every later call."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            event = await self._queue.get()
            try:
                attempt = 0
                while True:
                    attempt += 1
                    try:
                        await loop.run_in_executor(self._executor, self.write, event)
                        break
                    except (OperationalError, InterfaceError):
                        if attempt == 1 or attempt % 20 == 0:
                            log.warning(
                                "call %s: records database unreachable, retrying (%d events waiting)",
                                getattr(event, "call_id", "?"),
                                self._queue.qsize() + 1,
                            )
                        await asyncio.sleep(min(5.0, 0.2 * attempt))
                    except Exception:  # logged without the patient's words
                        log.exception(
                            "call %s: storing %s failed (attempt %d)",
                            getattr(event, "call_id", "?"),
                            type(event).__name__,
                            attempt,
                        )
                        if attempt >= _RETRIES:
                            break
                        await asyncio.sleep(0.2 * attempt)
            finally:
                self._queue.task_done()
                waiter = self._commits.pop(id(event), None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    # --- synchronous writes (writer thread) -------------------------------------------------
    def write(self, event: CallEvent) -> None:
        """Store one event in its own transaction."""
        with self.database.session() as session:
            match event:
                case CallStarted():
                    self._started(session, event)
                case TurnRecorded():
                    self._turn(session, event)
                case ActionTaken():
                    self._action(session, event)
                case CallEnded():
                    self._ended(session, event)

    @staticmethod
    def _ensure_call(session: Session, call_id: str) -> Call:
        call = session.get(Call, call_id)
        if call is None:  # events of a call whose start we did not see
            call = Call(id=call_id, channel="", language="", mode="triage", params={}, status="in_progress")
            session.add(call)
            session.flush()
        return call

    def _started(self, session: Session, event: CallStarted) -> None:
        info = event.info
        call = self._ensure_call(session, event.call_id)
        call.channel = info.channel
        call.language = info.language
        call.mode = info.mode
        call.params = dict(info.params or {})
        campaign = (info.params or {}).get("campaign_id")
        call.campaign_id = str(campaign) if campaign is not None else None
        call.started_at = datetime.fromtimestamp(event.started_at, UTC)
        call.state = "connecting"

    def _turn(self, session: Session, event: TurnRecorded) -> None:
        self._ensure_call(session, event.call_id)
        turn = event.turn
        exists = session.scalar(select(Turn.id).where(Turn.call_id == event.call_id, Turn.idx == turn.index))
        if exists is not None:
            return
        m = turn.metrics
        session.add(
            Turn(
                call_id=event.call_id,
                idx=turn.index,
                speaker=turn.speaker,
                text=turn.text,
                heard_text=turn.heard_text,
                start_s=turn.start_s,
                end_s=turn.end_s,
                interrupted=turn.interrupted,
                endpoint_wait_ms=m.endpoint_wait_ms if m else None,
                asr_ms=m.asr_ms if m else None,
                llm_first_token_ms=m.llm_first_token_ms if m else None,
                tts_first_audio_ms=m.tts_first_audio_ms if m else None,
                voice_to_voice_ms=m.voice_to_voice_ms if m else None,
                uncertain_words=_uncertain(turn),
            )
        )

    def _action(self, session: Session, event: ActionTaken) -> None:
        action = event.action
        if isinstance(action, Escalate):
            call = self._ensure_call(session, event.call_id)
            flags = list(action.red_flags) or ["escalation"]
            turn_idx = session.scalar(select(Turn.idx).where(Turn.call_id == call.id).order_by(Turn.idx.desc()))
            reason = action.reason or None
            self._add_red_flags(session, call, flags, reason=reason, level=action.level, turn_idx=turn_idx)
            if action.level in ("emergency_ambulance", "emergency") and urgency_rank(action.level) < call.urgency:
                call.disposition = action.level
                call.urgency = urgency_rank(action.level)
        elif isinstance(action, Outcome):
            self._apply_result(session, self._ensure_call(session, event.call_id), action.result)

    def _apply_result(self, session: Session, call: Call, r: CallResult | Progress) -> None:
        """What a result says of the call as a whole (the state so far, or the end): what it has wins."""
        if r.disposition:
            call.disposition = r.disposition
        call.urgency = urgency_rank(call.effective_disposition)
        if r.department:
            call.department = r.department
        if complaint := r.chief_complaint_name or r.chief_complaint:
            call.chief_complaint = complaint
        if r.red_flags:
            self._add_red_flags(session, call, list(r.red_flags))

    @staticmethod
    def _add_red_flags(
        session: Session,
        call: Call,
        flags: list[str],
        *,
        reason: str | None = None,
        level: str | None = None,
        turn_idx: int | None = None,
    ) -> None:
        """One row per red flag per call: the first time it was raised (with its reason) is kept."""
        known = set(session.scalars(select(RedFlag.flag).where(RedFlag.call_id == call.id)))
        for flag in dict.fromkeys(flags):
            if flag not in known:
                session.add(RedFlag(call_id=call.id, flag=flag, reason=reason, level=level, turn_idx=turn_idx))
        call.has_red_flags = True

    def _ended(self, session: Session, event: CallEnded) -> None:
        call = self._ensure_call(session, event.call_id)
        rows = record_rows(event.result)
        call.status = "ended"
        call.state = "ended"
        call.ended_at = datetime.now(UTC)
        call.end_reason = event.reason[:200]
        call.result = event.result.to_json()
        self._apply_result(session, call, event.result)
        if rows.summary:
            call.summary = rows.summary
        if event.recording_path:
            call.recording_path = str(event.recording_path)
        session.query(Finding).filter(Finding.call_id == call.id).delete()
        for f in rows.findings:
            session.add(Finding(call_id=call.id, name=f.name, value=f.value, evidence=f.evidence, turn_idx=f.turn_idx))
        session.query(FollowupOutcome).filter(FollowupOutcome.call_id == call.id).delete()
        for o in rows.outcomes:
            session.add(
                FollowupOutcome(call_id=call.id, item=o.item, value=o.value, evidence=o.evidence, concern=o.concern)
            )
        if not call.has_red_flags and session.scalar(select(RedFlag.id).where(RedFlag.call_id == call.id).limit(1)):
            call.has_red_flags = True
        self._review_call(session, call)

    @staticmethod
    def _review_call(session: Session, call: Call) -> None:
        """QA report and tags of the finished call, in a savepoint: if they fail, the record stands."""
        from records.qa import store_report
        from records.tags import store_tags

        try:
            with session.begin_nested():
                store_report(session, call)
                store_tags(session, call)
        except Exception:  # logged without the patient's words
            log.exception("call %s: QA report or tags failed; the call record is stored", call.id[:8])


def _uncertain(turn: Any) -> list[dict[str, Any]] | None:
    """The recogniser's unsure words, if the turn carries them (`uncertain_words`), as [{"word", "p"}]."""
    from records.qa.view import uncertain_words

    words = uncertain_words(getattr(turn, "uncertain_words", None))
    return [{"word": w.word, "p": w.p} for w in words] or None


CUT_OFF_REASON = "server stopped during the call"


def close_interrupted_calls(
    database: Database, recordings_dir: Path | None = None, *, idle_s: float | None = None
) -> int:
    """Calls still `in_progress` that no server is running any more: their turns are kept; mark
    them ended and attach the partial recording. With SQLite (one process) at start-up every such
    call was cut off (`idle_s=None`). With PostgreSQL other workers' calls may be live, so only
    calls with no new turn for `idle_s` seconds are closed (a live call speaks every few seconds)."""
    if idle_s is None and database.dialect != "sqlite":
        return 0
    query = select(Call).where(Call.status == "in_progress")
    if idle_s is not None:
        cutoff = datetime.now(UTC) - timedelta(seconds=idle_s)
        last_turn = select(func.max(Turn.recorded_at)).where(Turn.call_id == Call.id).scalar_subquery()
        query = query.where(func.coalesce(last_turn, Call.started_at) < cutoff)
    with database.session() as session:
        calls = list(session.scalars(query))
        for call in calls:
            call.status = "ended"
            call.state = "ended"
            call.end_reason = CUT_OFF_REASON
            if recordings_dir is not None and call.recording_path is None:
                wav = recordings_dir / f"{call.id}.wav"
                if wav.exists():
                    call.recording_path = str(wav)
        return len(calls)
