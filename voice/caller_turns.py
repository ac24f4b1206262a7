"""The caller's side of one call (`voice.call.Call` holds one): what comes in from the caller (audio,
key presses, the hang-up) becomes caller turns for the dialogue.

Caller audio, at the recogniser's rate, goes through the endpointer. While the caller speaks, partial
transcripts go to the client; at a pause, what was said so far is decoded speculatively (its words may
end the turn at once or hold it open: voice.turn_end), so that little is left to decode at the endpoint.
Speech that starts while the bot's words are still playing is a barge-in once it lasts; said over the
bot, a backchannel ("mm-hm") is no turn at all. Words of a turn the caller talked on past are carried
into the next one and answered together. The silence watch re-prompts a caller who says nothing and
ends a call that has had no word from the caller for too long (never an escalated one).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from voice.asr_words import uncertain_words
from voice.audio import Pcm
from voice.conversation import CallerUtterance
from voice.endpointer import SpeechDiscarded, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted
from voice.events import AudioDropped, CallerAudio, CallerHangup, Dtmf, PartialTranscript, Turn, TurnMetrics
from voice.languages import languages
from voice.ports import Transcript
from voice.reply import ReplyTiming
from voice.resample import ToRate, live_resampler
from voice.turn_end import only_openers
from voice.turn_end import verdict as turn_verdict

if TYPE_CHECKING:
    from voice.call import Call

log = logging.getLogger("carecall.call")

ASR_RATE = 16_000
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")


class CallerTurns:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.hung_up = False
        self._to_asr_rate = ToRate(ASR_RATE, live_resampler)
        self._stream_t0: float | None = None  # clock time the first caller audio arrived
        self._turn_lock = asyncio.Lock()
        self._partials: asyncio.Task[None] | None = None
        self._speculative: tuple[int, asyncio.Task[Transcript | None]] | None = None
        self._barge_candidate = False
        self.turns_pending = 0  # caller turns ended and not yet decided (a hold waits for them)
        self._speech_started = asyncio.Event()  # set at each SpeechStarted (an interjection's wait)
        self._over_bot = False  # the current utterance began over the bot's words (barge-in or not)
        self.last_activity = call.t0  # anything happened (reprompt timer)
        self._last_caller = call.t0  # the caller spoke or pressed a key (max silence)
        # Words of a turn the caller talked on past ("Hello! ... I have crushing chest pain"): they are
        # answered together with what follows, so the bot never asks its next question over the caller.
        self._carried: tuple[str, SpeechEnded] | None = None
        self._silences = 0
        self._dropped_told = False

    async def receive_loop(self) -> None:
        call = self.call
        while True:
            event = await call.transport.receive()
            if isinstance(event, CallerHangup):
                self.hung_up = True
                call.finish(event.reason)
                return
            if isinstance(event, Dtmf) and not call.takeover.quiet:  # with a nurse, keys answer nothing
                self.last_activity = self._last_caller = call.clock.now()
                self._silences = 0  # a key press answers
                await call.bot.interrupt(force=True)  # a key press is deliberate: it always interrupts
                call.bot.start(call.dialogue.on_dtmf(event.digit), None, "dtmf")
            elif isinstance(event, CallerAudio):
                self._on_audio(event.audio)
            elif isinstance(event, AudioDropped) and not self._dropped_told:
                self._dropped_told = True
                log.warning("call %s: the transport dropped caller audio (%s)", call.info.call_id[:8], event.reason)

    def _on_audio(self, audio: Pcm) -> None:
        call = self.call
        if call.takeover.link is not None:
            call.takeover.link.hear(audio)
        if self._stream_t0 is None:
            self._stream_t0 = call.clock.now() - audio.duration
        audio = self._to_asr_rate(audio)
        if call.recorder:
            call.recorder.caller(audio)
        for ev in call.endpointer.feed(audio):
            self._on_endpoint(ev)
        if call.endpointer.in_speech:
            self._last_caller = call.clock.now()
        if self._barge_candidate and call.endpointer.voiced_s() * 1000 >= call.tt.barge_in_min_speech_ms:
            self._barge_candidate = False
            call.spawn(call.bot.interrupt(), "barge-in")

    def _stream_to_call_s(self, stream_s: float) -> float:
        t0 = self.call.t0
        return (self._stream_t0 or t0) - t0 + stream_s

    def _on_endpoint(self, ev: object) -> None:
        call = self.call
        now = call.clock.now()
        if isinstance(ev, SpeechStarted):
            self._speech_started.set()
            # Not an answer yet (the re-prompt count goes on until it is a turn: see _caller_turn).
            self.last_activity = self._last_caller = now
            # Speech that starts once the bot's last word has been heard answers it ("OK" to "Calls are
            # recorded, OK?" said in the voice's trailing silence), rather than a barge-in or a backchannel.
            self._barge_candidate = self._over_bot = call.bot.speaking and not call.bot.words_heard()
            if self._barge_candidate:
                call.bot.hold()
            if call.tt.partial_interval_s > 0 and self._partials is None:
                self._partials = call.spawn(self._partial_loop(), "partials")
        elif isinstance(ev, SpeechPaused):
            self._drop_speculative()
            if call.tt.speculative_decoding and (not call.bot.speaking or call.bot.words_heard()):
                task = call.spawn(self._decode_quietly(ev.audio), "speculative")
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
                self._spawn_turn(self._caller_turn(ended, now, now, None, False, carried_text=text))
            elif self._carried is None:
                call.bot.release_hold()  # a cough or a click: the bot goes on
        elif isinstance(ev, SpeechEnded):
            self.last_activity = self._last_caller = now
            self._stop_partials()
            barge_candidate, self._barge_candidate = self._barge_candidate, False
            over_bot, self._over_bot = self._over_bot, False
            # The caller stopped speaking this long ago (the silence wait since then).
            speech_end = now - (call.endpointer.now_s - ev.speech_end_s)
            speculative, self._speculative = self._speculative, None
            self._spawn_turn(self._caller_turn(ev, speech_end, now, speculative, barge_candidate, over_bot=over_bot))

    def speaking_over_bot(self) -> None:
        """The bot starts (held) while the caller talks: this speech counts as said over the bot."""
        self._barge_candidate = self._over_bot = True

    async def _decode_quietly(self, audio: Pcm) -> Transcript | None:
        """A speculative decode: its failure only means the endpoint decodes again."""
        call = self.call
        try:
            return await call.engines.recognizer.transcribe(audio, call.info.language, hints=call.bot.hints)
        except Exception as exc:
            log.info("call %s: speculative decode failed: %r", call.info.call_id[:8], exc)
            return None

    def _judge_pause(self, task: asyncio.Task[Transcript | None]) -> None:
        """The words decoded at a pause end the turn now, hold it open, or leave the silence wait."""
        if task.cancelled() or task.exception() is not None or self._speculative is None:
            return
        call = self.call
        if self._speculative[1] is task and call.tt.text_turn_end:
            hints = call.bot.hints
            kind = hints.kind if hints else "free"
            heard = task.result()
            if heard is not None:
                call.endpointer.decide(turn_verdict(heard.text, call.info.language, kind))

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
        call = self.call
        last = ""
        while True:
            await call.clock.sleep(call.tt.partial_interval_s)
            audio = call.endpointer.speech_so_far()
            if audio is None:
                return
            if audio.duration < 0.5 or self._speculative is not None:
                continue
            t = await call.engines.recognizer.transcribe(audio, call.info.language, partial=True)
            if t.text and t.text != last and call.endpointer.in_speech:
                last = t.text
                await call.emit(PartialTranscript(call.info.call_id, t.text))

    def _spawn_turn(self, turn: Coroutine[Any, Any, None]) -> None:
        """A caller turn to decide; a hold on the bot waits until no turn is pending."""
        self.turns_pending += 1
        self.call.spawn(turn, "turn").add_done_callback(self._turn_decided)

    def _turn_decided(self, _: object) -> None:
        self.turns_pending -= 1
        self.call.bot.release_hold()  # it was no turn (or a backchannel): the bot goes on, unless the caller does

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
        call, bot = self.call, self.call.bot
        async with self._turn_lock:
            if not bot.speaking:
                await call.set_state("thinking")
            transcript: Transcript | None = None
            if carried_text is not None:
                transcript = Transcript(carried_text, call.info.language, 0.0, 0.0)
            elif speculative is not None and speculative[0] == len(ev.audio):
                transcript = await speculative[1]
            elif speculative is not None:
                speculative[1].cancel()
            if transcript is None:
                transcript = await call.engines.recognizer.transcribe(ev.audio, call.info.language, hints=bot.hints)
            text = transcript.text.strip()
            if not text or _ONLY_PUNCTUATION.match(text):
                if not bot.speaking:
                    await call.set_state("listening")
                return
            if barge_candidate and self._is_backchannel(text):
                return  # "mm-hm" said while the bot talked: an acknowledgement, not a turn
            interjection = over_bot and ev.speech_end_s - ev.start_s <= call.tt.interjection_max_s
            opener = call.tt.text_turn_end and only_openers(text, call.info.language)
            if carried_text is None and (interjection or opener):
                await self._wait_for_more(speech_end)  # the bot stays held (or was cut) meanwhile
            if carried_text is None and self._carried is not None:  # this turn goes on from the carried one
                first, first_ev = self._carried
                self._carried = None
                text = languages[call.info.language].join((first, text))
                ev = SpeechEnded(ev.audio, first_ev.start_s, ev.speech_end_s, ev.decided_s, ev.forced)
            if carried_text is None and call.endpointer.in_speech:
                self._carried = (text, ev)  # the caller is talking again: answer it all when they stop
                return
            if not call.takeover.quiet:  # (with a nurse the caller talks to her: they interrupt nothing)
                await bot.after_protected()
                await bot.interrupt(force=True)
            timing = ReplyTiming(speech_end=speech_end, endpoint=endpoint, transcript=call.clock.now())
            index = call.next_turn_index()
            m = timing.metrics()
            turn = Turn(
                index=index,
                speaker="caller",
                text=text,
                start_s=round(self._stream_to_call_s(ev.start_s), 3),
                end_s=round(self._stream_to_call_s(ev.speech_end_s), 3),
                metrics=TurnMetrics(endpoint_wait_ms=m.endpoint_wait_ms, asr_ms=m.asr_ms),
            )
            await call.record(turn)
            # Only words answer a re-prompt. A moan or breathing without words (no turn) leaves the count
            # as it was, so a caller who may have collapsed after a red flag is still held for a nurse
            # (dialogue: re-prompt once, then HoldForNurse) instead of being asked "are you there?" for ever.
            self._silences = 0
            if call.takeover.quiet:
                return  # the caller talks to the nurse: the turn is in the record, the dialogue waits
            unsure = uncertain_words(transcript.words, call.tt.uncertain_below)
            bot.start(call.dialogue.respond(CallerUtterance(text, index, unsure)), timing, "response")

    async def _wait_for_more(self, speech_end: float) -> None:
        """A short turn said over the bot ("Hello!" over the greeting), or a lone greeting at any time: the
        caller usually goes on, so it is answered once they have been quiet for `interjection_wait_ms`, or
        carried into what they say next. Answered at once, its reply began just as they went on ("I have
        crushing chest pain"), and those first words met the bot's voice in the browser's echo canceller."""
        call = self.call
        left = speech_end + call.tt.interjection_wait_ms / 1000 - call.clock.now()
        if left > 0 and not call.endpointer.in_speech:
            self._speech_started.clear()
            await call.clock.wait(self._speech_started, left)

    def _is_backchannel(self, text: str) -> bool:
        words = self.call.tt.backchannels.get(self.call.info.language, frozenset())
        normal = re.sub(r"[\W_]+", " ", text.lower()).strip()
        return normal in words or normal.replace(" ", "") in words

    async def silence_watch(self) -> None:
        call = self.call
        while True:
            await call.clock.sleep(0.25)
            now = call.clock.now()
            if call.takeover.quiet:  # the nurse leads: no re-prompt, no silence limit
                self.last_activity = self._last_caller = now
                continue
            if not call.bot.escalated and now - self._last_caller >= call.tt.max_silence_s:
                log.info("call %s: no word from the caller for %.0f s", call.info.call_id[:8], call.tt.max_silence_s)
                call.finish("no response from the caller")
                return
            busy = call.bot.speaking or call.endpointer.in_speech or self._turn_lock.locked()
            if busy or call.bot.pending:
                self.last_activity = now
                continue
            if now - self.last_activity >= call.tt.silence_reprompt_s:
                self._silences += 1
                self.last_activity = now
                call.bot.start(call.dialogue.on_silence(self._silences), None, "silence")
