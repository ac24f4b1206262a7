"""One call: the streaming loop that listens, decides when the caller has finished, asks the
dialogue for a reply, speaks it clause by clause, and stops at once when the caller barges in
(safety advice marked protected is finished first, or repeated).

The loop knows only seams: a Transport, a Recognizer, Synthesizers by language and a
DialogueManager, plus an injected clock. Each bot utterance is a `voice.reply.Reply`. Everything
the call starts runs in one `asyncio.TaskGroup`. Events go to observers first (the record commits a
finished turn) and only then to the caller's client, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from voice.asr_words import uncertain_words
from voice.audio import Pcm
from voice.clock import LOOP_CLOCK, Clock
from voice.conversation import (
    BotAction,
    CallerUtterance,
    DialogueManager,
    DialogueOutput,
    EndCall,
    Escalate,
    ExpectAnswer,
    Say,
    Transfer,
    Upcoming,
)
from voice.endpointer import (
    Endpointer,
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)
from voice.events import (
    ActionTaken,
    AudioDropped,
    CallEnded,
    CallerAudio,
    CallerHangup,
    CallEvent,
    CallInfo,
    CallStarted,
    CallState,
    Dtmf,
    PartialTranscript,
    StateChanged,
    Turn,
    TurnMetrics,
    TurnRecorded,
)
from voice.hub import Engines
from voice.languages import languages
from voice.playout import ReplyPlayer
from voice.ports import Holdable, Prefetching, RecognitionHints, Transcript, Transferable, Transport
from voice.recording import StereoRecorder
from voice.reply import Reply, ReplyTiming
from voice.resample import ToRate, live_resampler, relay_resampler
from voice.result import CallResult
from voice.takeover import NurseLink, TakeoverError, TakeoverState, say_only
from voice.textnorm import ClauseSplitter
from voice.turn_end import only_openers
from voice.turn_end import verdict as turn_verdict
from voice.turn_taking import TurnTaking

log = logging.getLogger("carecall.call")

__all__ = ["Call", "TurnTaking"]

ASR_RATE = 16_000
EVENT_DRAIN_S = 10.0  # at the end, at most this long for observers to take the last events
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")


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
        self._to_asr_rate = ToRate(ASR_RATE, live_resampler)
        self._t0 = self.clock.now()
        self._stream_t0: float | None = None  # clock time the first caller audio arrived
        self._turn_index = 0
        self._end = asyncio.Event()
        self._end_reason = "completed"
        self._caller_hung_up = False
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._reply: Reply | None = None
        self._owed: list[str] = []  # protected advice cut before it was heard: said again first
        self.player = ReplyPlayer(
            call_id=info.call_id, language=info.language, synthesizer=self.synthesizer, transport=transport,
            clock=self.clock, spawn=self._spawn, on_speaking=self._on_speaking, on_action=self._on_action,
            on_expect=self._on_expect, recorder=self.recorder, max_reply_s=self.tt.max_reply_s)
        self._turn_lock = asyncio.Lock()
        self._partials: asyncio.Task[None] | None = None
        self._speculative: tuple[int, asyncio.Task[Transcript | None]] | None = None
        self._barge_candidate = False
        # The bot's audio is held while the caller talks over it (TurnTaking.barge_in_hold): over WebRTC the
        # bot's voice is the browser echo canceller's reference, and the caller's words said over it came out
        # garbled ("crushing chest pain" heard as "This paint is"), so an emergency said over the greeting
        # was lost. Held at speech start; cut at a barge-in, let go when it was a backchannel or noise.
        self._holding = False
        self._turns_pending = 0  # caller turns ended and not yet decided (a hold waits for them)
        self._speech_started = asyncio.Event()  # set at each SpeechStarted (an interjection's wait)
        self._over_bot = False  # the current utterance began over the bot's words (barge-in or not)
        self._last_activity = self._t0  # anything happened (reprompt timer)
        self._last_caller = self._t0  # the caller spoke or pressed a key (max silence)
        self._hints: RecognitionHints | None = None  # what the pending question expects (ExpectAnswer)
        # Words of a turn the caller talked on past ("Hello! ... I have crushing chest pain"): they are
        # answered together with what follows, so the bot never asks its next question over the caller.
        self._carried: tuple[str, SpeechEnded] | None = None
        self._silences = 0
        self._escalated = False
        self._dropped_told = False
        self.state: CallState = "connecting"
        self.turns: list[Turn] = []
        self._takeover = TakeoverState()  # a nurse who took the call over (voice.takeover.Takeable)

    # --- lifecycle ------------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if not self._end.is_set():
            self._end_reason = reason
            self._end.set()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
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
            self._finish("internal error")
            return None

    async def run(self) -> CallResult:
        deliver = asyncio.create_task(self._deliver_events(), name=f"events:{self.info.call_id[:8]}")
        await self._emit(CallStarted(self.info.call_id, self.info, time.time()))
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._spawn(self._receive_loop(), "receive")
                self._spawn(self._silence_watch(), "silence")
                self._spawn(self._time_limit(), "time-limit")
                self._start_reply(self.dialogue.opening(), None, "opening")
                await self._end.wait()
                reply = self._reply
                if reply is not None and not reply.done and reply.start_s is not None:
                    reply.heard_s = self.transport.played_s()  # the call ended mid-reply
                self._release_hold(force=True)  # a goodbye queued behind a hold still plays
                for task in list(self._tasks):
                    task.cancel()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.recorder:
                self.recorder.close()
            result = self._takeover.with_history(self.dialogue.result())
            await self._set_state("ended")
            await self._emit(CallEnded(self.info.call_id, self._end_reason, result,
                                       str(self.recorder.path) if self.recorder else None))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox.join(), EVENT_DRAIN_S)
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver
            if not self._caller_hung_up:
                with contextlib.suppress(Exception):
                    await self.transport.hangup(self._end_reason)
        return result

    def now_s(self) -> float:
        return self.clock.now() - self._t0

    async def _emit(self, event: CallEvent) -> None:
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

    async def _set_state(self, state: CallState) -> None:
        if state != self.state:
            self.state = state
            await self._emit(StateChanged(self.info.call_id, state))

    async def _time_limit(self) -> None:
        await self.clock.sleep(self.tt.max_call_s)
        if self._escalated:
            # An escalated caller who is still on the line may have collapsed: the bot never ends it (as it
            # never ends one for silence); the nurse alerted at the escalation, or the caller, does.
            log.warning("call %s: maximum call length reached after an escalation: the line stays open for "
                        "a nurse", self.info.call_id[:8])
            return
        log.info("call %s: maximum call length reached", self.info.call_id[:8])
        self._finish("maximum call length reached")

    # --- caller side ------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while True:
            event = await self.transport.receive()
            if isinstance(event, CallerHangup):
                self._caller_hung_up = True
                self._finish(event.reason)
                return
            if isinstance(event, Dtmf) and not self._takeover.quiet:  # with a nurse, keys answer nothing
                self._last_activity = self._last_caller = self.clock.now()
                self._silences = 0  # a key press answers
                await self._interrupt(force=True)  # a key press is deliberate: it always interrupts
                self._start_reply(self.dialogue.on_dtmf(event.digit), None, "dtmf")
            elif isinstance(event, CallerAudio):
                self._on_audio(event.audio)
            elif isinstance(event, AudioDropped) and not self._dropped_told:
                self._dropped_told = True
                log.warning("call %s: the transport dropped caller audio (%s)", self.info.call_id[:8], event.reason)

    def _on_audio(self, audio: Pcm) -> None:
        if self._takeover.link is not None:
            self._takeover.link.hear(audio)
        if self._stream_t0 is None:
            self._stream_t0 = self.clock.now() - audio.duration
        audio = self._to_asr_rate(audio)
        if self.recorder:
            self.recorder.caller(audio)
        for ev in self.endpointer.feed(audio):
            self._on_endpoint(ev)
        if self.endpointer.in_speech:
            self._last_caller = self.clock.now()
        if self._barge_candidate and self.endpointer.voiced_s() * 1000 >= self.tt.barge_in_min_speech_ms:
            self._barge_candidate = False
            self._spawn(self._interrupt(), "barge-in")

    def _words_heard(self) -> bool:
        reply = self._reply
        return reply is not None and reply.words_heard(self.transport.played_s())

    def _stream_to_call_s(self, stream_s: float) -> float:
        return (self._stream_t0 or self._t0) - self._t0 + stream_s

    def _on_endpoint(self, ev: object) -> None:
        now = self.clock.now()
        if isinstance(ev, SpeechStarted):
            self._speech_started.set()
            # Not an answer yet (the re-prompt count goes on until it is a turn: see _caller_turn).
            self._last_activity = self._last_caller = now
            # Speech that starts once the bot's last word has been heard answers it ("OK" to "Calls are
            # recorded, OK?" said in the voice's trailing silence), rather than a barge-in or a backchannel.
            self._barge_candidate = self._over_bot = self.player.speaking and not self._words_heard()
            if self._barge_candidate:
                self._hold()
            if self.tt.partial_interval_s > 0 and self._partials is None:
                self._partials = self._spawn(self._partial_loop(), "partials")
        elif isinstance(ev, SpeechPaused):
            self._drop_speculative()
            if self.tt.speculative_decoding and (not self.player.speaking or self._words_heard()):
                task = self._spawn(self._decode_quietly(ev.audio), "speculative")
                self._speculative = (len(ev.audio), task)
                task.add_done_callback(self._judge_pause)
        elif isinstance(ev, SpeechResumed):
            self._drop_speculative()
        elif isinstance(ev, SpeechDiscarded):
            self._barge_candidate = self._over_bot = False
            self._stop_partials()
            if self._carried is not None and not self._turn_lock.locked():  # what followed was only noise
                text, ended = self._carried
                self._carried = None
                self._turns_pending += 1
                self._spawn(self._caller_turn(ended, now, now, None, False, carried_text=text), "turn")
            elif self._carried is None:
                self._release_hold()  # a cough or a click: the bot goes on
        elif isinstance(ev, SpeechEnded):
            self._last_activity = self._last_caller = now
            self._stop_partials()
            barge_candidate, self._barge_candidate = self._barge_candidate, False
            over_bot, self._over_bot = self._over_bot, False
            # The caller stopped speaking this long ago (the silence wait since then).
            speech_end = now - (self.endpointer.now_s - ev.speech_end_s)
            speculative, self._speculative = self._speculative, None
            self._turns_pending += 1
            self._spawn(self._caller_turn(ev, speech_end, now, speculative, barge_candidate, over_bot=over_bot),
                        "turn")

    async def _decode_quietly(self, audio: Pcm) -> Transcript | None:
        """A speculative decode: its failure only means the endpoint decodes again."""
        try:
            return await self.engines.recognizer.transcribe(audio, self.info.language, hints=self._hints)
        except Exception as exc:
            log.info("call %s: speculative decode failed: %r", self.info.call_id[:8], exc)
            return None

    def _judge_pause(self, task: asyncio.Task[Transcript | None]) -> None:
        """The words decoded at a pause end the turn now, hold it open, or leave the silence wait."""
        if task.cancelled() or task.exception() is not None or self._speculative is None:
            return
        if self._speculative[1] is task and self.tt.text_turn_end:
            kind = self._hints.kind if self._hints else "free"
            heard = task.result()
            if heard is not None:
                self.endpointer.decide(turn_verdict(heard.text, self.info.language, kind))

    def _drop_speculative(self) -> None:
        """The caller went on talking: that decode is stale (cancelled if it has not started)."""
        if self._speculative is not None:
            self._speculative[1].cancel()
            self._speculative = None

    def _stop_partials(self) -> None:
        if self._partials is not None:
            self._partials.cancel()
            self._partials = None

    async def _partial_loop(self) -> None:
        last = ""
        while True:
            await self.clock.sleep(self.tt.partial_interval_s)
            audio = self.endpointer.speech_so_far()
            if audio is None:
                return
            if audio.duration < 0.5 or self._speculative is not None:
                continue
            t = await self.engines.recognizer.transcribe(audio, self.info.language, partial=True)
            if t.text and t.text != last and self.endpointer.in_speech:
                last = t.text
                await self._emit(PartialTranscript(self.info.call_id, t.text))

    async def _caller_turn(
        self,
        ev: SpeechEnded,
        speech_end: float,
        endpoint: float,
        speculative: tuple[int, asyncio.Task[Transcript | None]] | None,
        barge_candidate: bool,
        carried_text: str | None = None,
        *,
        over_bot: bool = False,
    ) -> None:
        try:
            await self._decide_turn(ev, speech_end, endpoint, speculative, barge_candidate, carried_text, over_bot)
        finally:
            self._turns_pending -= 1
            self._release_hold()  # it was no turn (or a backchannel): the bot goes on, unless the caller does

    async def _decide_turn(
        self,
        ev: SpeechEnded,
        speech_end: float,
        endpoint: float,
        speculative: tuple[int, asyncio.Task[Transcript | None]] | None,
        barge_candidate: bool,
        carried_text: str | None,
        over_bot: bool,
    ) -> None:
        async with self._turn_lock:
            if not self.player.speaking:
                await self._set_state("thinking")
            transcript: Transcript | None = None
            if carried_text is not None:
                transcript = Transcript(carried_text, self.info.language, 0.0, 0.0)
            elif speculative is not None and speculative[0] == len(ev.audio):
                transcript = await speculative[1]
            elif speculative is not None:
                speculative[1].cancel()
            if transcript is None:
                transcript = await self.engines.recognizer.transcribe(ev.audio, self.info.language, hints=self._hints)
            text = transcript.text.strip()
            if not text or _ONLY_PUNCTUATION.match(text):
                if not self.player.speaking:
                    await self._set_state("listening")
                return
            if barge_candidate and self._is_backchannel(text):
                return  # "mm-hm" said while the bot talked: an acknowledgement, not a turn
            interjection = over_bot and ev.speech_end_s - ev.start_s <= self.tt.interjection_max_s
            opener = self.tt.text_turn_end and only_openers(text, self.info.language)
            if carried_text is None and (interjection or opener):
                await self._wait_for_more(speech_end)  # the bot stays held (or was cut) meanwhile
            if carried_text is None and self._carried is not None:  # this turn goes on from the carried one
                first, first_ev = self._carried
                self._carried = None
                text = languages[self.info.language].join((first, text))
                ev = SpeechEnded(ev.audio, first_ev.start_s, ev.speech_end_s, ev.decided_s, ev.forced)
            if carried_text is None and self.endpointer.in_speech:
                self._carried = (text, ev)  # the caller is talking again: answer it all when they stop
                return
            if not self._takeover.quiet:  # (with a nurse the caller talks to her: they interrupt nothing)
                await self._after_protected()
                await self._interrupt(force=True)
            timing = ReplyTiming(speech_end=speech_end, endpoint=endpoint, transcript=self.clock.now())
            index = self._next_turn_index()
            m = timing.metrics()
            turn = Turn(
                index=index,
                speaker="caller",
                text=text,
                start_s=round(self._stream_to_call_s(ev.start_s), 3),
                end_s=round(self._stream_to_call_s(ev.speech_end_s), 3),
                metrics=TurnMetrics(endpoint_wait_ms=m.endpoint_wait_ms, asr_ms=m.asr_ms),
            )
            await self._record(turn)
            # Only words answer a re-prompt. A moan or breathing without words (no turn) leaves the count
            # as it was, so a caller who may have collapsed after a red flag is still held for a nurse
            # (dialogue: re-prompt once, then HoldForNurse) instead of being asked "are you there?" for ever.
            self._silences = 0
            if self._takeover.quiet:
                return  # the caller talks to the nurse: the turn is in the record, the dialogue waits
            unsure = uncertain_words(transcript.words, self.tt.uncertain_below)
            self._start_reply(self.dialogue.respond(CallerUtterance(text, index, unsure)), timing, "response")

    async def _wait_for_more(self, speech_end: float) -> None:
        """A short turn said over the bot ("Hello!" over the greeting), or a lone greeting at any time: the
        caller usually goes on, so it is answered once they have been quiet for `interjection_wait_ms`, or
        carried into what they say next. Answered at once, its reply began just as they went on ("I have
        crushing chest pain"), and those first words met the bot's voice in the browser's echo canceller."""
        left = speech_end + self.tt.interjection_wait_ms / 1000 - self.clock.now()
        if left > 0 and not self.endpointer.in_speech:
            self._speech_started.clear()
            await self.clock.wait(self._speech_started, left)

    def _is_backchannel(self, text: str) -> bool:
        words = self.tt.backchannels.get(self.info.language, frozenset())
        normal = re.sub(r"[\W_]+", " ", text.lower()).strip()
        return normal in words or normal.replace(" ", "") in words

    async def _silence_watch(self) -> None:
        while True:
            await self.clock.sleep(0.25)
            now = self.clock.now()
            if self._takeover.quiet:  # the nurse leads: no re-prompt, no silence limit
                self._last_activity = self._last_caller = now
                continue
            if not self._escalated and now - self._last_caller >= self.tt.max_silence_s:
                log.info("call %s: no word from the caller for %.0f s", self.info.call_id[:8], self.tt.max_silence_s)
                self._finish("no response from the caller")
                return
            busy = self.player.speaking or self.endpointer.in_speech or self._turn_lock.locked()
            if busy or (self._reply is not None and not self._reply.done):
                self._last_activity = now
                continue
            if now - self._last_activity >= self.tt.silence_reprompt_s:
                self._silences += 1
                self._last_activity = now
                self._start_reply(self.dialogue.on_silence(self._silences), None, "silence")

    def _next_turn_index(self) -> int:
        index = self._turn_index
        self._turn_index += 1
        return index

    async def _record(self, turn: Turn) -> None:
        self.turns.append(turn)
        await self._emit(TurnRecorded(self.info.call_id, turn))

    # --- bot side -------------------------------------------------------------------------
    def _start_reply(self, outputs: AsyncIterator[DialogueOutput], timing: ReplyTiming | None, kind: str) -> None:
        reply = Reply(kind, timing)
        if self._owed:
            outputs, self._owed = _say_first(" ".join(self._owed), outputs), []
        reply.task = self._spawn(self._speak(reply, outputs), f"reply-{kind}")
        self._reply = reply

    async def _after_protected(self) -> None:
        """The caller spoke over protected advice: their turn comes once the advice has been played."""
        reply = self._reply
        if reply is not None and not reply.done and reply.protected:
            self._release_hold(force=True)  # protected advice is never held back (it may join a held reply)
        while reply is not None and not reply.done and reply.protected:
            reply.caller_waiting = True
            left = reply.protected_left_s(self.transport.played_s())
            if left == 0:
                return
            if left is None:  # still being synthesised: wait for the next clause
                reply.changed.clear()
                await reply.changed.wait()
            else:
                await self.clock.sleep(left)

    async def _cut_after_protected(self, reply: Reply) -> None:
        """A barge-in over protected advice: cut the rest of the reply as soon as the advice is heard."""
        await self._after_protected()
        if self._reply is reply and not reply.done:
            await self._interrupt(force=True)

    def _hold(self, reply: Reply | None = None) -> bool:
        """Hold the bot's audio while the caller talks over it (not protected advice, not with a nurse);
        True if it is held."""
        reply = reply or self._reply
        if (not self.tt.barge_in_hold or self._takeover.quiet or reply is None or reply.done or reply.protected
                or not isinstance(self.transport, Holdable)):
            return False
        self.transport.hold()
        self._holding = True
        return True

    def _release_hold(self, *, force: bool = False) -> None:
        """Let the held bot go on, once the caller is quiet and no turn of theirs is still being decided."""
        if not self._holding or (not force and (self.endpointer.in_speech or self._turns_pending > 0)):
            return
        self._holding = False
        assert isinstance(self.transport, Holdable)
        self.transport.release()

    async def _interrupt(self, *, force: bool = False) -> None:
        """Barge-in: silence the bot now, then cancel generation and synthesis. Protected advice is
        not cut by speech (`force=False`): the caller's turn waits for it (`_after_protected`)."""
        reply = self._reply
        if reply is None or reply.done or reply.task is None:
            return
        if not force and reply.protected and reply.protected_left_s(self.transport.played_s()) != 0:
            if not reply.caller_waiting:
                reply.caller_waiting = True
                self._spawn(self._cut_after_protected(reply), "cut-after-advice")
            return
        # Cancel before clearing: clearing awaits (it tells the client), and a reply still running
        # could push one more chunk in that gap, to be played after the clear.
        reply.task.cancel()
        self._holding = False  # (clearing ends a hold)
        reply.heard_s = await self.transport.clear()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reply.task
        self._owed = reply.unheard_protected()
        if not self._end.is_set():
            await self._set_state("listening")

    async def _speak(self, reply: Reply, outputs: AsyncIterator[DialogueOutput]) -> None:
        """Speak one reply (voice.playout), then record it and act on what follows the speech."""
        self.endpointer.set_silence_ms(self.tt.endpointer.silence_ms)  # until ExpectAnswer says otherwise
        self._hints = None  # until ExpectAnswer says what the next answer looks like
        try:
            await self.player.play(reply, outputs)
        except asyncio.CancelledError:
            if not reply.recorded:
                await self._bot_turn_done(reply)
            raise
        await self._bot_turn_done(reply)
        for action in reply.after:
            await self._after_speech(action)
        if not self._end.is_set():
            await self._set_state("listening")
            self._prefetch_next()
        self._last_activity = self.clock.now()

    async def _on_speaking(self, reply: Reply) -> None:
        if reply.start_s is None:
            reply.start_s = self.now_s()
        if self.endpointer.in_speech and self._hold(reply):
            # The bot is about to start while the caller talks (an answer ready just as they went on): its
            # first audio waits, and this speech is judged as one over the bot (a barge-in, or a backchannel).
            self._barge_candidate = self._over_bot = True
        await self._set_state("speaking")

    async def _on_action(self, action: BotAction) -> None:
        self._escalated = self._escalated or isinstance(action, Escalate)
        await self._emit(ActionTaken(self.info.call_id, action))

    def _on_expect(self, expect: ExpectAnswer) -> None:
        self._hints = RecognitionHints(expect.kind, expect.phrases)  # the recogniser knows the question
        if expect.kind in ("yes_no", "number", "scale"):
            self.endpointer.set_silence_ms(self.tt.short_answer_silence_ms, up_to_speech_s=self.tt.short_answer_max_s)
        else:
            self.endpointer.set_silence_ms(self.tt.endpointer.silence_ms)

    def _prefetch_next(self) -> None:
        """Render the dialogue's likely next phrases while the caller talks (if both sides can)."""
        if not isinstance(self.synthesizer, Prefetching) or not isinstance(self.dialogue, Upcoming):
            return
        clauses: list[str] = []
        for text in self.dialogue.upcoming():
            splitter = ClauseSplitter(self.info.language)
            clauses += splitter.push(text) + splitter.flush()
        self.synthesizer.prefetch(clauses)

    async def _after_speech(self, action: EndCall | Transfer) -> None:
        if isinstance(action, EndCall):
            self._finish(action.reason)
        elif not isinstance(self.transport, Transferable):
            log.info("call %s: transport cannot transfer", self.info.call_id[:8])
        elif await self.transport.transfer(action.target):
            self._finish("transferred")

    async def _bot_turn_done(self, reply: Reply) -> None:
        if reply.recorded:
            return
        reply.recorded = True
        text = reply.text
        if not text:
            return
        heard = reply.heard_text(self.info.language)
        self.dialogue.heard(heard, reply.interrupted)
        start = reply.start_s if reply.start_s is not None else self.now_s()
        end = start + reply.heard_s if reply.heard_s is not None else self.now_s()
        await self._record(
            Turn(
                index=self._next_turn_index(),
                speaker="bot",
                text=text,
                start_s=round(start, 3),
                end_s=round(end, 3),
                interrupted=reply.interrupted,
                heard_text=heard if reply.interrupted else None,
                metrics=reply.timing.metrics() if reply.timing else None,
                protected=reply.protected,
            )
        )

    # --- a nurse takes over (voice.takeover.Takeable) -----------------------------------------
    @property
    def nurse(self) -> str | None:
        return self._takeover.link.nurse if self._takeover.link is not None else None

    async def take_over(self, link: NurseLink) -> None:
        if self._tg is None or self._end.is_set():
            raise TakeoverError("the call is not live")
        self._takeover.begin(link, self.now_s(), self._hints)
        log.info("call %s: a nurse took over", self.info.call_id[:8])
        await self._after_protected()  # safety advice being spoken is heard to its end first
        await self._interrupt(force=True)
        if self._end.is_set() or self._takeover.link is not link:  # ended, or handed back meanwhile
            return
        self._start_reply(say_only(link.handover), None, "handover")
        self._takeover.task = self._spawn(self._nurse_side(link), "nurse")

    async def _nurse_side(self, link: NurseLink) -> None:
        try:
            await link.run(self)
            why = "the nurse's connection ended"
        except Exception as exc:  # her side failing must not end the caller's call: the bot takes it back
            log.warning("call %s: the nurse's side failed: %r", self.info.call_id[:8], exc)
            why = "the nurse's connection failed"
        if self._takeover.link is link and not self._end.is_set():
            await self.hand_back(link.nurse, why)

    async def hand_back(self, nurse: str, why: str | None = None) -> None:
        link = self._takeover.release("handback", nurse, self.now_s(), why)
        log.info("call %s: handed back to the bot", self.info.call_id[:8])
        await self._interrupt(force=True)  # (the handover sentence, if it is still playing)
        self._start_reply(self._takeover.resume(link.hand_back), None, "handback")

    async def end_by_nurse(self, nurse: str) -> None:
        link = self._takeover.release("end", nurse, self.now_s(), None)
        await self._interrupt(force=True)
        self._start_reply(say_only(link.goodbye), None, "takeover-end")
        self._spawn(self._end_after(self._reply), "takeover-end")

    async def _end_after(self, goodbye: Reply | None) -> None:
        """The call ends once the goodbye is over, heard in full or talked over."""
        if goodbye is not None and goodbye.task is not None:
            await asyncio.wait({goodbye.task})
        self._finish("taken_over")

    async def nurse_speaks(self, audio: Pcm) -> None:
        """Her audio goes out through the call's transport, once the handover sentence is over
        (one paced output: the two would interleave); until then it is not played."""
        if self._takeover.link is None or (self._reply is not None and not self._reply.done):
            return
        if self._takeover.to_line is None or self._takeover.to_line.out_rate != self.transport.output_rate:
            self._takeover.to_line = ToRate(self.transport.output_rate, relay_resampler)
        audio = self._takeover.to_line(audio)
        if len(audio):
            await self.transport.send_audio(audio)
            if self.recorder:
                self.recorder.bot(audio)

    async def record_nurse_turn(self, text: str, start_s: float, end_s: float) -> None:
        turn = Turn(index=self._next_turn_index(), speaker="nurse", text=text, start_s=round(start_s, 3),
                    end_s=round(end_s, 3))  # fmt: skip
        await self._record(turn)


async def _say_first(text: str, outputs: AsyncIterator[DialogueOutput]) -> AsyncIterator[DialogueOutput]:
    """Protected advice the caller did not hear, said again before the next reply."""
    yield Say(text, protected=True)
    async for out in outputs:
        yield out
