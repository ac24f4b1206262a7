"""One call: the streaming loop that listens, decides when the caller has finished, asks the
dialogue for a reply, speaks it clause by clause, and stops at once when the caller barges in
(safety advice marked protected is finished first, or repeated).

The loop knows only seams: a Transport, a Recognizer, Synthesizers by language and a
DialogueManager, plus an injected clock. `Call` owns the call's life (its one `asyncio.TaskGroup`,
its state, the ordered events, the turn record) and who has the floor: the bot, or a nurse who took
the call over (voice.takeover). Its two sides are parts it holds: `caller` (voice.caller_turns: audio,
keys and hang-up in, endpointing, speculative decoding, partials, backchannels, the silence watch)
and `bot` (voice.bot_replies: each `voice.reply.Reply` spoken, interrupted or finished when protected,
and recorded). Events go to observers first (the record commits a finished turn) and only then to the
caller's client, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from voice.audio import Pcm
from voice.bot_replies import BotReplies
from voice.caller_turns import CallerTurns
from voice.clock import LOOP_CLOCK, Clock
from voice.conversation import DialogueManager
from voice.endpointer import Endpointer
from voice.events import CallEnded, CallEvent, CallInfo, CallStarted, CallState, StateChanged, Turn, TurnRecorded
from voice.hub import Engines
from voice.ports import Transport
from voice.recording import StereoRecorder
from voice.reply import Reply
from voice.resample import ToRate, relay_resampler
from voice.result import CallResult
from voice.takeover import NurseLink, TakeoverError, TakeoverState, say_only
from voice.turn_taking import TurnTaking

log = logging.getLogger("carecall.call")

__all__ = ["Call", "TurnTaking"]

EVENT_DRAIN_S = 10.0  # at the end, at most this long for observers to take the last events


class Call:
    def __init__(
        self,
        *,
        info: CallInfo,
        transport: Transport,
        engines: Engines,
        publish: Callable[[CallEvent], Awaitable[bool | None]],
        turn_taking: TurnTaking | None = None,
        recording_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.info = info
        self.transport = transport
        self.engines = engines
        self._publish = publish
        self.tt = turn_taking or TurnTaking()
        self.clock = clock or LOOP_CLOCK
        self.synthesizer = engines.synthesizers[info.language]
        self.endpointer = Endpointer(self.tt.endpointer)
        self.recorder = (StereoRecorder(recording_dir / f"{info.call_id}.wav", max_s=self.tt.max_call_s + 60)
                         if recording_dir else None)
        self.dialogue: DialogueManager = engines.dialogue(info)
        self.t0 = self.clock.now()  # call time 0 (`now_s`)
        self._turn_index = 0
        self._end = asyncio.Event()
        self._end_reason = "completed"
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: asyncio.Queue[CallEvent] = asyncio.Queue()
        self.state: CallState = "connecting"
        self.turns: list[Turn] = []
        self.takeover = TakeoverState()  # a nurse who took the call over (voice.takeover.Takeable)
        self.bot = BotReplies(self)
        self.caller = CallerTurns(self)

    # --- lifecycle ------------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        self.finish(reason)

    def finish(self, reason: str) -> None:
        if not self._end.is_set():
            self._end_reason = reason
            self._end.set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task of this call, in its TaskGroup; a failure ends the call, never the process."""
        assert self._tg is not None, "the call is not running"
        task = self._tg.create_task(self._guard(coro, name), name=f"{name}:{self.info.call_id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, Any], name: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("call %s: task %s failed: %r", self.info.call_id[:8], name, exc, exc_info=exc)
            self.finish("internal error")
            return None

    async def run(self) -> CallResult:
        deliver = asyncio.create_task(self._deliver_events(), name=f"events:{self.info.call_id[:8]}")
        await self.emit(CallStarted(self.info.call_id, self.info, time.time()))
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self.spawn(self.caller.receive_loop(), "receive")
                self.spawn(self.caller.silence_watch(), "silence")
                self.spawn(self._time_limit(), "time-limit")
                self.bot.start(self.dialogue.opening(), None, "opening")
                await self._end.wait()
                reply = self.bot.reply
                if reply is not None and not reply.done and reply.start_s is not None:
                    reply.heard_s = self.transport.played_s()  # the call ended mid-reply
                self.bot.release_hold(force=True)  # a goodbye queued behind a hold still plays
                for task in list(self._tasks):
                    task.cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.recorder:
                self.recorder.close()
            result = self.takeover.with_history(self.dialogue.result())
            await self.set_state("ended")
            await self.emit(CallEnded(self.info.call_id, self._end_reason, result,
                                      str(self.recorder.path) if self.recorder else None))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), EVENT_DRAIN_S)
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver
            if not self.caller.hung_up:
                with contextlib.suppress(Exception):
                    await self.transport.hangup(self._end_reason)
        return result

    def now_s(self) -> float:
        return self.clock.now() - self.t0

    @property
    def ended(self) -> bool:
        return self._end.is_set()

    async def emit(self, event: CallEvent) -> None:
        """Events leave in order: observers first (the record commits a finished turn), then the
        caller's client, so a client never sees a turn as final that a crash could still lose."""
        self._outbox.put_nowait(event)

    async def _deliver_events(self) -> None:
        while True:
            event = await self._outbox.get()
            try:
                if await self._publish(event) is False and isinstance(event, TurnRecorded):
                    event = dataclasses.replace(event, stored=False)  # final, but not yet on disk
                await self.transport.send_event(event)
            except Exception as exc:  # the caller's client went away; the hang-up will follow
                log.debug("call %s: event not delivered: %r", self.info.call_id[:8], exc)
            finally:
                self._outbox.task_done()

    async def set_state(self, state: CallState) -> None:
        if state != self.state:
            self.state = state
            await self.emit(StateChanged(self.info.call_id, state))

    async def _time_limit(self) -> None:
        await self.clock.sleep(self.tt.max_call_s)
        if self.bot.escalated:
            # An escalated caller who is still on the line may have collapsed: the bot never ends it (as it
            # never ends one for silence); the nurse alerted at the escalation, or the caller, does.
            log.warning("call %s: maximum call length reached after an escalation: the line stays open for "
                        "a nurse", self.info.call_id[:8])
            return
        log.info("call %s: maximum call length reached", self.info.call_id[:8])
        self.finish("maximum call length reached")

    # --- the record of turns ----------------------------------------------------------------
    def next_turn_index(self) -> int:
        index = self._turn_index
        self._turn_index += 1
        return index

    async def record(self, turn: Turn) -> None:
        self.turns.append(turn)
        await self.emit(TurnRecorded(self.info.call_id, turn))

    # --- a nurse takes over (voice.takeover.Takeable) -----------------------------------------
    @property
    def nurse(self) -> str | None:
        return self.takeover.link.nurse if self.takeover.link is not None else None

    async def take_over(self, link: NurseLink) -> None:
        if self._tg is None or self._end.is_set():
            raise TakeoverError("the call is not live")
        self.takeover.begin(link, self.now_s(), self.bot.hints)
        log.info("call %s: a nurse took over", self.info.call_id[:8])
        await self.bot.after_protected()  # safety advice being spoken is heard to its end first
        await self.bot.interrupt(force=True)
        if self._end.is_set() or self.takeover.link is not link:  # ended, or handed back meanwhile
            return
        self.bot.start(say_only(link.handover), None, "handover")
        self.takeover.task = self.spawn(self._nurse_side(link), "nurse")

    async def _nurse_side(self, link: NurseLink) -> None:
        try:
            await link.run(self)
            why = "the nurse's connection ended"
        except Exception as exc:  # her side failing must not end the caller's call: the bot takes it back
            log.warning("call %s: the nurse's side failed: %r", self.info.call_id[:8], exc)
            why = "the nurse's connection failed"
        if self.takeover.link is link and not self._end.is_set():
            await self.hand_back(link.nurse, why)

    async def hand_back(self, nurse: str, why: str | None = None) -> None:
        link = self.takeover.release("handback", nurse, self.now_s(), why)
        log.info("call %s: handed back to the bot", self.info.call_id[:8])
        await self.bot.interrupt(force=True)  # (the handover sentence, if it is still playing)
        self.bot.start(self.takeover.resume(link.hand_back), None, "handback")

    async def end_by_nurse(self, nurse: str) -> None:
        link = self.takeover.release("end", nurse, self.now_s(), None)
        await self.bot.interrupt(force=True)
        self.bot.start(say_only(link.goodbye), None, "takeover-end")
        self.spawn(self._end_after(self.bot.reply), "takeover-end")

    async def _end_after(self, goodbye: Reply | None) -> None:
        """The call ends once the goodbye is over, heard in full or talked over."""
        if goodbye is not None and goodbye.task is not None:
            await asyncio.wait({goodbye.task})
        self.finish("taken_over")

    async def nurse_speaks(self, audio: Pcm) -> None:
        """Her audio goes out through the call's transport, once the handover sentence is over
        (one paced output: the two would interleave); until then it is not played."""
        if self.takeover.link is None or self.bot.pending:
            return
        if self.takeover.to_line is None or self.takeover.to_line.out_rate != self.transport.output_rate:
            self.takeover.to_line = ToRate(self.transport.output_rate, relay_resampler)
        audio = self.takeover.to_line(audio)
        if len(audio):
            await self.transport.send_audio(audio)
            if self.recorder:
                self.recorder.bot(audio)

    async def record_nurse_turn(self, text: str, start_s: float, end_s: float) -> None:
        turn = Turn(index=self.next_turn_index(), speaker="nurse", text=text, start_s=round(start_s, 3),
                    end_s=round(end_s, 3))  # fmt: skip
        await self.record(turn)

