"""The bot's side of one call (`voice.call.Call` holds one): each reply the dialogue gives is spoken
clause by clause (voice.playout), recorded once with what the caller actually heard, and followed by
what comes after its speech (the end of the call, a transfer). A barge-in stops the reply at once,
except safety advice marked protected: the caller's turn waits until it has been heard, and advice
that was cut before it was heard is said again before the next reply.

What a reply expects next (`ExpectAnswer`) sets the endpointer's silence wait and the recogniser's
hints for the caller's answer (voice.caller_turns reads `hints`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from voice.conversation import BotAction, DialogueOutput, EndCall, Escalate, ExpectAnswer, Say, Transfer, Upcoming
from voice.events import ActionTaken, Turn
from voice.playout import ReplyPlayer
from voice.ports import Holdable, Prefetching, RecognitionHints, Transferable
from voice.reply import Reply, ReplyTiming
from voice.textnorm import ClauseSplitter

if TYPE_CHECKING:
    from voice.call import Call

log = logging.getLogger("carecall.call")


class BotReplies:
    def __init__(self, call: Call) -> None:
        self.call = call
        self.reply: Reply | None = None  # the latest reply (it may be over)
        self.owed: list[str] = []  # protected advice cut before it was heard: said again first
        self.hints: RecognitionHints | None = None  # what the pending question expects (ExpectAnswer)
        self.escalated = False  # the dialogue escalated the call (it is never ended by the bot then)
        # The bot's audio is held while the caller talks over it (TurnTaking.barge_in_hold): over WebRTC the
        # bot's voice is the browser echo canceller's reference, and the caller's words said over it came out
        # garbled ("crushing chest pain" heard as "This paint is"), so an emergency said over the greeting
        # was lost. Held at speech start; cut at a barge-in, let go when it was a backchannel or noise.
        self.holding = False
        self.player = ReplyPlayer(
            call_id=call.info.call_id, language=call.info.language, synthesizer=call.synthesizer,
            transport=call.transport, clock=call.clock, spawn=call.spawn, on_speaking=self._on_speaking,
            on_action=self._on_action, on_expect=self._on_expect, recorder=call.recorder,
            max_reply_s=call.tt.max_reply_s)

    @property
    def speaking(self) -> bool:
        return self.player.speaking

    @property
    def pending(self) -> bool:
        """A reply is still being generated or spoken."""
        return self.reply is not None and not self.reply.done

    def words_heard(self) -> bool:
        """The caller has heard the latest reply's last word."""
        reply = self.reply
        return reply is not None and reply.words_heard(self.call.transport.played_s())

    def start(self, outputs: AsyncIterator[DialogueOutput], timing: ReplyTiming | None, kind: str) -> None:
        reply = Reply(kind, timing)
        if self.owed:
            outputs, self.owed = _say_first(" ".join(self.owed), outputs), []
        reply.task = self.call.spawn(self._speak(reply, outputs), f"reply-{kind}")
        self.reply = reply

    async def after_protected(self) -> None:
        """The caller spoke over protected advice: their turn comes once the advice has been played."""
        reply = self.reply
        if reply is not None and not reply.done and reply.protected:
            self.release_hold(force=True)  # protected advice is never held back (it may join a held reply)
        while reply is not None and not reply.done and reply.protected:
            reply.caller_waiting = True
            left = reply.protected_left_s(self.call.transport.played_s())
            if left == 0:
                return
            if left is None:  # still being synthesised: wait for the next clause
                reply.changed.clear()
                await reply.changed.wait()
            else:
                await self.call.clock.sleep(left)

    def hold(self, reply: Reply | None = None) -> bool:
        """Hold the bot's audio while the caller talks over it (not protected advice, not with a nurse);
        True if it is held."""
        call, reply = self.call, reply or self.reply
        if (not call.tt.barge_in_hold or call.takeover.quiet or reply is None or reply.done or reply.protected
                or not isinstance(call.transport, Holdable)):
            return False
        call.transport.hold()
        self.holding = True
        return True

    def release_hold(self, *, force: bool = False) -> None:
        """Let the held bot go on, once the caller is quiet and no turn of theirs is still being decided."""
        call = self.call
        if not self.holding or (not force and (call.endpointer.in_speech or call.caller.turns_pending > 0)):
            return
        self.holding = False
        assert isinstance(call.transport, Holdable)
        call.transport.release()

    async def _cut_after_protected(self, reply: Reply) -> None:
        """A barge-in over protected advice: cut the rest of the reply as soon as the advice is heard."""
        await self.after_protected()
        if self.reply is reply and not reply.done:
            await self.interrupt(force=True)

    async def interrupt(self, *, force: bool = False) -> None:
        """Barge-in: silence the bot now, then cancel generation and synthesis. Protected advice is
        not cut by speech (`force=False`): the caller's turn waits for it (`after_protected`)."""
        reply = self.reply
        if reply is None or reply.done or reply.task is None:
            return
        transport = self.call.transport
        if not force and reply.protected and reply.protected_left_s(transport.played_s()) != 0:
            if not reply.caller_waiting:
                reply.caller_waiting = True
                self.call.spawn(self._cut_after_protected(reply), "cut-after-advice")
            return
        # Cancel before clearing: clearing awaits (it tells the client), and a reply still running
        # could push one more chunk in that gap, to be played after the clear.
        reply.task.cancel()
        self.holding = False  # (clearing ends a hold)
        reply.heard_s = await transport.clear()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reply.task
        self.owed = reply.unheard_protected()
        if not self.call.ended:
            await self.call.set_state("listening")

    async def _speak(self, reply: Reply, outputs: AsyncIterator[DialogueOutput]) -> None:
        """Speak one reply (voice.playout), then record it and act on what follows the speech."""
        call = self.call
        call.endpointer.set_silence_ms(call.tt.endpointer.silence_ms)  # until ExpectAnswer says otherwise
        self.hints = None  # until ExpectAnswer says what the next answer looks like
        try:
            await self.player.play(reply, outputs)
        except asyncio.CancelledError:
            if not reply.recorded:
                await self._bot_turn_done(reply)
            raise
        await self._bot_turn_done(reply)
        for action in reply.after:
            await self._after_speech(action)
        if not call.ended:
            await call.set_state("listening")
            self._prefetch_next()
        call.caller.last_activity = call.clock.now()

    async def _on_speaking(self, reply: Reply) -> None:
        if reply.start_s is None:
            reply.start_s = self.call.now_s()
        if self.call.endpointer.in_speech and self.hold(reply):
            # The bot is about to start while the caller talks (an answer ready just as they went on): its
            # first audio waits, and this speech is judged as one over the bot (a barge-in, or a backchannel).
            self.call.caller.speaking_over_bot()
        await self.call.set_state("speaking")

    async def _on_action(self, action: BotAction) -> None:
        self.escalated = self.escalated or isinstance(action, Escalate)
        await self.call.emit(ActionTaken(self.call.info.call_id, action))

    def _on_expect(self, expect: ExpectAnswer) -> None:
        call = self.call
        self.hints = RecognitionHints(expect.kind, expect.phrases)  # the recogniser knows the question
        if expect.kind in ("yes_no", "number", "scale"):
            call.endpointer.set_silence_ms(call.tt.short_answer_silence_ms, up_to_speech_s=call.tt.short_answer_max_s)
        else:
            call.endpointer.set_silence_ms(call.tt.endpointer.silence_ms)

    def _prefetch_next(self) -> None:
        """Render the dialogue's likely next phrases while the caller talks (if both sides can)."""
        synthesizer, dialogue = self.call.synthesizer, self.call.dialogue
        if not isinstance(synthesizer, Prefetching) or not isinstance(dialogue, Upcoming):
            return
        clauses: list[str] = []
        for text in dialogue.upcoming():
            splitter = ClauseSplitter(self.call.info.language)
            clauses += splitter.push(text) + splitter.flush()
        synthesizer.prefetch(clauses)

    async def _after_speech(self, action: EndCall | Transfer) -> None:
        transport = self.call.transport
        if isinstance(action, EndCall):
            self.call.finish(action.reason)
        elif not isinstance(transport, Transferable):
            log.info("call %s: transport cannot transfer", self.call.info.call_id[:8])
        elif await transport.transfer(action.target):
            self.call.finish("transferred")

    async def _bot_turn_done(self, reply: Reply) -> None:
        if reply.recorded:
            return
        reply.recorded = True
        text = reply.text
        if not text:
            return
        call = self.call
        heard = reply.heard_text(call.info.language)
        call.dialogue.heard(heard, reply.interrupted)
        start = reply.start_s if reply.start_s is not None else call.now_s()
        end = start + reply.heard_s if reply.heard_s is not None else call.now_s()
        await call.record(
            Turn(
                index=call.next_turn_index(),
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


async def _say_first(text: str, outputs: AsyncIterator[DialogueOutput]) -> AsyncIterator[DialogueOutput]:
    """Protected advice the caller did not hear, said again before the next reply."""
    yield Say(text, protected=True)
    async for out in outputs:
        yield out
