"""Speaking one reply: dialogue text → clauses → TTS → the transport, the three stages overlapping.

`ReplyPlayer.play(reply, outputs)` fills the `voice.reply.Reply` as it goes (text, clauses with
their offsets, the protected part, timing) and returns once the caller has heard all of it. A
barge-in cancels it (the call loop then records what was heard); a reply past `max_reply_s` is cut
here. What the dialogue asks beyond speech goes back to the call through `on_action` and
`on_expect`; the call learns that the bot started speaking through `on_speaking`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from voice.audio import Pcm, speech_end_s
from voice.clock import Clock
from voice.conversation import BotAction, DialogueOutput, EndCall, ExpectAnswer, Say, Transfer
from voice.languages import languages
from voice.ports import Synthesizer, Transport
from voice.recording import StereoRecorder
from voice.reply import Reply, SpokenClause
from voice.resample import StreamResampler
from voice.textnorm import ClauseSplitter

log = logging.getLogger("carecall.call")

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class ReplyPlayer:
    def __init__(
        self,
        *,
        call_id: str,
        language: str,
        synthesizer: Synthesizer,
        transport: Transport,
        clock: Clock,
        spawn: Spawn,
        on_speaking: Callable[[Reply], Awaitable[None]],
        on_action: Callable[[BotAction], Awaitable[None]],
        on_expect: Callable[[ExpectAnswer], None],
        recorder: StereoRecorder | None = None,
        max_reply_s: float = 120.0,
    ) -> None:
        self.call_id = call_id
        self.language = language
        self.synthesizer = synthesizer
        self.transport = transport
        self.clock = clock
        self._spawn = spawn
        self._on_speaking = on_speaking
        self._on_action = on_action
        self._on_expect = on_expect
        self.recorder = recorder
        self.max_reply_s = max_reply_s
        self.speaking = False  # bot audio of the current reply has gone out and is not over

    async def play(self, reply: Reply, outputs: AsyncIterator[DialogueOutput]) -> None:
        clauses: asyncio.Queue[tuple[str, bool] | None] = asyncio.Queue()
        producer = self._spawn(self._produce(reply, outputs, clauses), "reply-text")
        self.transport.mark_turn()
        # One resampler per bot turn, flushed at its end, so no tail of the turn waits in its filter.
        resampler = StreamResampler(self.synthesizer.sample_rate, self.transport.output_rate)
        timing = reply.timing
        try:
            async with asyncio.timeout(self.max_reply_s):
                while (item := await clauses.get()) is not None:
                    text, protected = item
                    if timing and timing.first_clause is None:
                        timing.first_clause = self.clock.now()
                    clause_s = synth_s = 0.0
                    async for audio in self.synthesizer.synthesize(text):
                        if timing and timing.first_synth is None:
                            timing.first_synth = self.clock.now()
                        if (spoken_s := speech_end_s(audio)) > 0:
                            reply.last_word_s = reply.sent_s + synth_s + spoken_s
                        synth_s += audio.duration
                        clause_s += await self._send(reply, resampler.process(audio))
                    reply.clauses.append(SpokenClause(text, reply.sent_s, clause_s, protected))
                    reply.sent_s += clause_s
                    if protected and text in reply.pending_protected:
                        reply.pending_protected.remove(text)
                    reply.changed.set()
                if self.speaking:
                    tail = resampler.process(Pcm.silence(0, resampler.in_rate), last=True)
                    reply.sent_s += await self._send(reply, tail)
                reply.complete = True
                # Until the caller has heard it all: barge-in stays possible meanwhile.
                await self.transport.wait_for_playout()
        except TimeoutError:
            log.warning("call %s: a reply ran past %.0f s; cut", self.call_id[:8], self.max_reply_s)
            producer.cancel()
            reply.heard_s = await self.transport.clear()
            reply.after.clear()
        except asyncio.CancelledError:
            producer.cancel()
            raise
        finally:
            self.speaking = False
            reply.changed.set()

    async def _produce(self, reply: Reply, outputs: AsyncIterator[DialogueOutput],
                       clauses: asyncio.Queue[tuple[str, bool] | None]) -> None:
        splitter = ClauseSplitter(self.language)
        timing = reply.timing
        try:
            async for out in outputs:
                if isinstance(out, str):
                    if timing and timing.first_text is None:
                        timing.first_text = self.clock.now()
                    pack = languages[self.language]
                    # The voice gets the words as the record joins them ("now. Please", not "now.Please",
                    # which was one clause the warm-up never rendered and a word the voice ran together).
                    joiner = pack.continue_text(reply.text_parts[-1] if reply.text_parts else "", out)
                    reply.add_text(out, pack)
                    if isinstance(out, Say) and out.protected:  # its own clauses, marked
                        own = ClauseSplitter(self.language)
                        parts = [(c, False) for c in splitter.flush()]
                        parts += [(c, True) for c in own.push(out.text) + own.flush()]
                    else:
                        parts = [(c, False) for c in splitter.push(joiner + out)]
                    for clause, protected in parts:
                        if protected:
                            reply.pending_protected.append(clause)
                        await clauses.put((clause, protected))
                elif isinstance(out, ExpectAnswer):
                    self._on_expect(out)
                elif isinstance(out, EndCall | Transfer):  # after the speech has been heard
                    reply.after.append(out)
                    await self._on_action(out)
                else:  # Escalate, Outcome...: act at once, mid-sentence if need be
                    await self._on_action(out)
            for clause in splitter.flush():
                await clauses.put((clause, False))
        finally:
            await clauses.put(None)

    async def _send(self, reply: Reply, out: Pcm) -> float:
        """Bot audio to the caller (and the recording); returns its duration."""
        if not len(out):
            return 0.0
        if not self.speaking:
            self.speaking = True
            await self._on_speaking(reply)
        await self.transport.send_audio(out)
        if self.recorder:
            self.recorder.bot(out)
        if reply.timing and reply.timing.first_sent is None:
            reply.timing.first_sent = self.clock.now()
        return out.duration
