"""One call: the streaming loop that listens, decides when the caller has finished, asks the
dialogue for a reply, speaks it clause by clause, and stops at once when the caller barges in.

The loop knows only seams: a Transport, a Recognizer, Synthesizers by language and a
DialogueManager. Everything it does is reported as events (voice.events) to observers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voice.asr_words import uncertain_words
from voice.audio import Pcm
from voice.conversation import (
    CallerUtterance,
    DialogueManager,
    DialogueOutput,
    EndCall,
    ExpectAnswer,
    Transfer,
)
from voice.endpointer import (
    Endpointer,
    EndpointerConfig,
    SpeechDiscarded,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
)
from voice.events import (
    ActionTaken,
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
from voice.ports import RecognitionHints, Transcript, Transport
from voice.recording import StereoRecorder
from voice.resample import StreamResampler
from voice.textnorm import ClauseSplitter
from voice.turn_end import verdict as turn_verdict

log = logging.getLogger("carecall.call")

ASR_RATE = 16_000
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")


@dataclass(frozen=True, slots=True)
class TurnTaking:
    """How the call takes turns (LiveKit-style: one typed object with documented defaults)."""

    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    # Silence that ends a short answer (after a yes/no or number question).
    short_answer_silence_ms: int = 300
    # ...but only while the answer is this short; longer speech is a sentence with pauses in it.
    short_answer_max_s: float = 1.2
    # Caller speech over the bot longer than this interrupts it at once; shorter speech is
    # transcribed first and interrupts only if it is not a backchannel ("mm-hm", "嗯").
    barge_in_min_speech_ms: int = 600
    backchannels: dict[str, frozenset[str]] = field(default_factory=dict)
    partial_interval_s: float = 0.6  # 0 turns partial transcripts off
    speculative_decoding: bool = True  # start the final decode at a pause, before the endpoint
    silence_reprompt_s: float = 8.0
    uncertain_below: float = 0.5  # word probability under which a word is reported as uncertain
    text_turn_end: bool = True  # end/hold a turn at a pause from the words decoded there (voice.turn_end)


@dataclass
class _ReplyTiming:
    speech_end: float  # monotonic: the caller stopped speaking
    endpoint: float  # the endpointer decided
    transcript: float  # final transcript ready
    first_text: float | None = None
    first_clause: float | None = None
    first_synth: float | None = None
    first_sent: float | None = None

    def metrics(self) -> TurnMetrics:
        def ms(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else round((b - a) * 1000, 1)

        return TurnMetrics(
            endpoint_wait_ms=ms(self.speech_end, self.endpoint),
            asr_ms=ms(self.endpoint, self.transcript),
            llm_first_token_ms=ms(self.transcript, self.first_text),
            tts_first_audio_ms=ms(self.first_clause, self.first_synth),
            voice_to_voice_ms=ms(self.speech_end, self.first_sent),
        )


@dataclass
class _SpokenClause:
    text: str
    start_s: float  # offset in the bot turn's audio
    duration_s: float


class Call:
    def __init__(
        self,
        *,
        info: CallInfo,
        transport: Transport,
        engines: Engines,
        publish: Callable[[CallEvent], Awaitable[None]],
        turn_taking: TurnTaking | None = None,
        recording_dir: Path | None = None,
    ) -> None:
        self.info = info
        self.transport = transport
        self.engines = engines
        self._publish = publish
        self.tt = turn_taking or TurnTaking()
        self.synthesizer = engines.synthesizers[info.language]
        self.endpointer = Endpointer(self.tt.endpointer)
        self.recorder = StereoRecorder(recording_dir / f"{info.call_id}.wav") if recording_dir else None
        self.dialogue: DialogueManager = engines.dialogue(info)
        self._in_resamplers: dict[int, StreamResampler] = {}
        self._t0 = time.monotonic()
        self._stream_t0: float | None = None  # monotonic time the first caller audio arrived
        self._turn_index = 0
        self._end = asyncio.Event()
        self._end_reason = "completed"
        self._caller_hung_up = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reply: asyncio.Task[None] | None = None
        self._reply_clauses: list[_SpokenClause] = []
        self._interrupted_at_s: float | None = None
        self._speaking = False
        self._bot_turn_start_s: float | None = None
        self._turn_lock = asyncio.Lock()
        self._partials: asyncio.Task[None] | None = None
        self._speculative: tuple[int, asyncio.Task[Transcript]] | None = None
        self._barge_candidate = False
        self._hints: RecognitionHints | None = None  # what the pending question expects (ExpectAnswer)
        # Words of a turn the caller talked on past ("Hello! ... I have crushing chest pain"): they are
        # answered together with what follows, so the bot never asks its next question over the caller.
        self._carried: tuple[str, SpeechEnded] | None = None
        self._last_activity = time.monotonic()
        self._silences = 0
        self.state: CallState = "connecting"
        self.turns: list[Turn] = []

    # --- lifecycle ------------------------------------------------------------------------
    def cancel(self, reason: str) -> None:
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if not self._end.is_set():
            self._end_reason = reason
            self._end.set()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"{name}:{self.info.call_id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("call %s: task %s failed: %r", self.info.call_id[:8], task.get_name(), exc,
                      exc_info=exc)
            self._finish("internal error")

    async def run(self) -> dict[str, Any]:
        await self._emit(CallStarted(self.info.call_id, self.info, time.time()))
        self._spawn(self._receive_loop(), "receive")
        self._spawn(self._silence_watch(), "silence")
        self._start_reply(self.dialogue.opening(), None)
        try:
            await self._end.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.recorder:
                self.recorder.close()
            result = self.dialogue.result()
            await self._set_state("ended")
            await self._emit(CallEnded(self.info.call_id, self._end_reason, result,
                                       str(self.recorder.path) if self.recorder else None))
            if not self._caller_hung_up:
                with contextlib.suppress(Exception):
                    await self.transport.hangup(self._end_reason)
        return result

    def now_s(self) -> float:
        return time.monotonic() - self._t0

    async def _emit(self, event: CallEvent) -> None:
        await self._publish(event)
        try:
            await self.transport.send_event(event)
        except Exception as exc:  # the caller's client went away; the hang-up will follow
            log.debug("call %s: event not delivered: %r", self.info.call_id[:8], exc)

    async def _set_state(self, state: CallState) -> None:
        if state != self.state:
            self.state = state
            await self._emit(StateChanged(self.info.call_id, state))

    # --- caller side ------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        while True:
            event = await self.transport.receive()
            if isinstance(event, CallerHangup):
                self._caller_hung_up = True
                self._finish(event.reason)
                return
            if isinstance(event, Dtmf):
                self._last_activity = time.monotonic()
                await self._interrupt()
                self._start_reply(self.dialogue.on_dtmf(event.digit), None)
                continue
            if isinstance(event, CallerAudio):
                self._on_audio(event.audio)

    def _on_audio(self, audio: Pcm) -> None:
        if self._stream_t0 is None:
            self._stream_t0 = time.monotonic() - audio.duration
        if audio.sample_rate != ASR_RATE:
            rs = self._in_resamplers.get(audio.sample_rate)
            if rs is None:
                rs = self._in_resamplers[audio.sample_rate] = StreamResampler(audio.sample_rate, ASR_RATE)
            audio = rs.process(audio)
        if self.recorder:
            self.recorder.caller(audio)
        for ev in self.endpointer.feed(audio):
            self._on_endpoint(ev)
        if (
            self._barge_candidate
            and self.endpointer.voiced_s() * 1000 >= self.tt.barge_in_min_speech_ms
        ):
            self._barge_candidate = False
            self._spawn(self._interrupt(), "barge-in")

    def _stream_to_call_s(self, stream_s: float) -> float:
        return (self._stream_t0 or self._t0) - self._t0 + stream_s

    def _on_endpoint(self, ev: object) -> None:
        now = time.monotonic()
        if isinstance(ev, SpeechStarted):
            self._last_activity = now
            self._silences = 0
            self._barge_candidate = self._speaking
            if self.tt.partial_interval_s > 0 and self._partials is None:
                self._partials = self._spawn(self._partial_loop(), "partials")
        elif isinstance(ev, SpeechPaused):
            self._drop_speculative()
            if self.tt.speculative_decoding and not self._speaking:
                task = asyncio.ensure_future(
                    self.engines.recognizer.transcribe(ev.audio, self.info.language, hints=self._hints))
                self._speculative = (len(ev.audio), task)
                task.add_done_callback(self._judge_pause)
        elif isinstance(ev, SpeechResumed):
            self._drop_speculative()
        elif isinstance(ev, SpeechDiscarded):
            self._barge_candidate = False
            self._stop_partials()
            if self._carried is not None and not self._turn_lock.locked():  # what followed was only noise
                text, ended = self._carried
                self._carried = None
                self._spawn(self._caller_turn(ended, now, now, None, False, carried_text=text), "turn")
        elif isinstance(ev, SpeechEnded):
            self._last_activity = now
            self._stop_partials()
            barge_candidate, self._barge_candidate = self._barge_candidate, False
            # The caller stopped speaking this long ago (the silence wait since then).
            speech_end = now - (self.endpointer.now_s - ev.speech_end_s)
            speculative, self._speculative = self._speculative, None
            self._spawn(self._caller_turn(ev, speech_end, now, speculative, barge_candidate), "turn")

    def _judge_pause(self, task: asyncio.Task[Transcript]) -> None:
        """The words decoded at a pause end the turn now, hold it open, or leave the silence wait."""
        if task.cancelled() or task.exception() is not None or self._speculative is None:
            return
        if self._speculative[1] is task and self.tt.text_turn_end:
            kind = self._hints.kind if self._hints else "free"
            self.endpointer.decide(turn_verdict(task.result().text, self.info.language, kind))

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
            await asyncio.sleep(self.tt.partial_interval_s)
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
        speculative: tuple[int, asyncio.Task[Transcript]] | None,
        barge_candidate: bool,
        carried_text: str | None = None,
    ) -> None:
        async with self._turn_lock:
            if not self._speaking:
                await self._set_state("thinking")
            if carried_text is not None:
                transcript = Transcript(carried_text, self.info.language, 0.0, 0.0)
            elif speculative is not None and speculative[0] == len(ev.audio):
                transcript = await speculative[1]
            else:
                if speculative is not None:
                    speculative[1].cancel()
                transcript = await self.engines.recognizer.transcribe(
                    ev.audio, self.info.language, hints=self._hints)
            text = transcript.text.strip()
            if not text or _ONLY_PUNCTUATION.match(text):
                if not self._speaking:
                    await self._set_state("listening")
                return
            if barge_candidate and self._is_backchannel(text):
                return  # "mm-hm" said while the bot talked: an acknowledgement, not a turn
            if carried_text is None and self._carried is not None:  # this turn goes on from the carried one
                first, first_ev = self._carried
                self._carried = None
                text = (first + ("" if self.info.language == "zh" else " ") + text).strip()
                ev = SpeechEnded(ev.audio, first_ev.start_s, ev.speech_end_s, ev.decided_s, ev.forced)
            if carried_text is None and self.endpointer.in_speech:
                self._carried = (text, ev)  # the caller is talking again: answer it all when they stop
                return
            await self._interrupt()
            timing = _ReplyTiming(speech_end=speech_end, endpoint=endpoint, transcript=time.monotonic())
            index = self._next_turn_index()
            turn = Turn(
                index=index,
                speaker="caller",
                text=text,
                start_s=round(self._stream_to_call_s(ev.start_s), 3),
                end_s=round(self._stream_to_call_s(ev.speech_end_s), 3),
                metrics=TurnMetrics(endpoint_wait_ms=timing.metrics().endpoint_wait_ms,
                                    asr_ms=timing.metrics().asr_ms),
            )
            await self._record(turn)
            unsure = uncertain_words(transcript.words, self.tt.uncertain_below)
            self._start_reply(self.dialogue.respond(CallerUtterance(text, index, unsure)), timing)

    def _is_backchannel(self, text: str) -> bool:
        words = self.tt.backchannels.get(self.info.language, frozenset())
        normal = re.sub(r"[\W_]+", " ", text.lower()).strip()
        return normal in words or normal.replace(" ", "") in words

    async def _silence_watch(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            busy = self._speaking or self.endpointer.in_speech or self._turn_lock.locked()
            if busy or (self._reply is not None and not self._reply.done()):
                self._last_activity = time.monotonic()
                continue
            if time.monotonic() - self._last_activity >= self.tt.silence_reprompt_s:
                self._silences += 1
                self._last_activity = time.monotonic()
                self._start_reply(self.dialogue.on_silence(self._silences), None)

    def _next_turn_index(self) -> int:
        index = self._turn_index
        self._turn_index += 1
        return index

    async def _record(self, turn: Turn) -> None:
        self.turns.append(turn)
        await self._emit(TurnRecorded(self.info.call_id, turn))

    # --- bot side -------------------------------------------------------------------------
    def _start_reply(self, outputs: AsyncIterator[DialogueOutput], timing: _ReplyTiming | None) -> None:
        self._reply = self._spawn(self._speak(outputs, timing), "reply")

    async def _interrupt(self) -> None:
        """Barge-in: silence the bot now, then cancel generation and synthesis."""
        reply = self._reply
        if reply is None or reply.done():
            return
        self._interrupted_at_s = self.transport.played_s()
        # Cancel before clearing: clearing awaits (it tells the client), and a reply still running
        # could push one more chunk in that gap, to be played after the clear.
        reply.cancel()
        await self.transport.clear()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reply
        if not self._end.is_set():
            await self._set_state("listening")

    async def _speak(self, outputs: AsyncIterator[DialogueOutput], timing: _ReplyTiming | None) -> None:
        """Dialogue text → clauses → TTS → transport, the three stages overlapping."""
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        after: list[Any] = []  # actions that wait for the speech to end (hang-up, transfer)
        self._reply_clauses = []
        self._interrupted_at_s = None
        self.endpointer.set_silence_ms(self.tt.endpointer.silence_ms)  # until ExpectAnswer says otherwise
        self._hints = None
        full_text: list[str] = []
        self._bot_turn_start_s = None
        turn_recorded = False

        async def produce() -> None:
            splitter = ClauseSplitter(self.info.language)
            try:
                async for out in outputs:
                    if isinstance(out, str):
                        if timing and timing.first_text is None:
                            timing.first_text = time.monotonic()
                        full_text.append(out)
                        for clause in splitter.push(out):
                            await clauses.put(clause)
                    elif isinstance(out, ExpectAnswer):
                        self._hints = RecognitionHints(out.kind, out.phrases)
                        if out.kind in ("yes_no", "number", "scale"):
                            self.endpointer.set_silence_ms(
                                self.tt.short_answer_silence_ms, up_to_speech_s=self.tt.short_answer_max_s)
                        else:
                            self.endpointer.set_silence_ms(self.tt.endpointer.silence_ms)
                    elif isinstance(out, EndCall | Transfer):
                        after.append(out)
                        await self._emit(ActionTaken(self.info.call_id, out))
                    else:  # Escalate, Outcome: act at once, mid-sentence if need be
                        await self._emit(ActionTaken(self.info.call_id, out))
                for clause in splitter.flush():
                    await clauses.put(clause)
            finally:
                await clauses.put(None)

        producer = asyncio.ensure_future(produce())
        self.transport.mark_turn()
        # One resampler per bot turn, flushed at its end, so no tail of the turn waits in its filter.
        resampler = StreamResampler(self.synthesizer.sample_rate, self.transport.output_rate)
        try:
            sent_s = 0.0
            while (clause := await clauses.get()) is not None:
                if timing and timing.first_clause is None:
                    timing.first_clause = time.monotonic()
                clause_s = 0.0
                async for audio in self.synthesizer.synthesize(clause):
                    if timing and timing.first_synth is None:
                        timing.first_synth = time.monotonic()
                    clause_s += await self._send(resampler.process(audio), timing)
                self._reply_clauses.append(_SpokenClause(clause, sent_s, clause_s))
                sent_s += clause_s
            await producer
            if self._speaking:
                sent_s += await self._send(resampler.process(Pcm.silence(0, resampler.in_rate), last=True), timing)
            # Wait until the caller has heard it all: barge-in stays possible meanwhile.
            while self.transport.played_s() + 0.02 < sent_s:
                await asyncio.sleep(0.02)
            await self._bot_turn_done(full_text, self._bot_turn_start_s, timing, interrupted=False)
            turn_recorded = True
        except asyncio.CancelledError:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer
            if not turn_recorded:
                await self._bot_turn_done(full_text, self._bot_turn_start_s, timing, interrupted=True)
            raise
        finally:
            self._speaking = False
        for action in after:
            await self._after_speech(action)
        if not self._end.is_set():
            await self._set_state("listening")
            self._prefetch_next()
        self._last_activity = time.monotonic()

    def _prefetch_next(self) -> None:
        """Render the dialogue's likely next phrases while the caller talks (if both sides can)."""
        prefetch = getattr(self.synthesizer, "prefetch", None)
        upcoming = getattr(self.dialogue, "upcoming", None)
        if prefetch is None or upcoming is None:
            return
        clauses: list[str] = []
        for text in upcoming():
            splitter = ClauseSplitter(self.info.language)
            clauses += splitter.push(text) + splitter.flush()
        prefetch(clauses)

    async def _send(self, out: Pcm, timing: _ReplyTiming | None) -> float:
        """Bot audio to the caller (and the recording); returns its duration."""
        if not len(out):
            return 0.0
        if not self._speaking:
            self._speaking = True
            self._bot_turn_start_s = self.now_s()
            await self._set_state("speaking")
        await self.transport.send_audio(out)
        if self.recorder:
            self.recorder.bot(out)
        if timing and timing.first_sent is None:
            timing.first_sent = time.monotonic()
        return out.duration

    async def _after_speech(self, action: object) -> None:
        if isinstance(action, EndCall):
            self._finish(action.reason)
        elif isinstance(action, Transfer):
            transfer = getattr(self.transport, "transfer", None)
            if transfer is None:
                log.info("call %s: transport cannot transfer", self.info.call_id[:8])
                return
            if await transfer(action.target):
                self._finish("transferred")

    async def _bot_turn_done(
        self, text_parts: list[str], start_s: float | None, timing: _ReplyTiming | None, *, interrupted: bool
    ) -> None:
        text = "".join(text_parts).strip()
        if not text:
            return
        heard = self._heard_text() if interrupted else text
        self.dialogue.heard(heard, interrupted)
        played = self._interrupted_at_s if interrupted else None
        start = start_s if start_s is not None else self.now_s()
        end = start + played if played is not None else self.now_s()
        await self._record(
            Turn(
                index=self._next_turn_index(),
                speaker="bot",
                text=text,
                start_s=round(start, 3),
                end_s=round(end, 3),
                interrupted=interrupted,
                heard_text=heard if interrupted else None,
                metrics=timing.metrics() if timing else None,
            )
        )

    def _heard_text(self) -> str:
        """The part of the reply the caller heard before barging in (whole clauses, and the
        heard share of the clause that was playing)."""
        played = self._interrupted_at_s or 0.0
        heard: list[str] = []
        for c in self._reply_clauses:
            if played >= c.start_s + c.duration_s:
                heard.append(c.text)
            elif played > c.start_s and c.duration_s > 0:
                share = (played - c.start_s) / c.duration_s
                heard.append(c.text[: int(len(c.text) * share)])
                break
            else:
                break
        sep = "" if self.info.language == "zh" else " "
        return sep.join(h.strip() for h in heard if h.strip())
