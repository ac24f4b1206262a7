"""Escalation never abandons the caller (issue 9): after a red flag, silence leads to a hold for a nurse
(a `HoldForNurse` action and a nurse-level `Escalate` that the console shows), the line stays open and the
bot never ends the call itself. Through the dialogue in both languages, and through the real call loop
(voice.call.Call) on the fakes of tests/voice/fakes.py and virtual time: the silent caller is held, a moan is
no answer, an unanswered suspected red flag escalates, and the emergency instruction is heard in full or
said again when the caller talks or presses a key over it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dialogue.factory import build_dialogue_factory
from tests.dialogue.screen_driver import Call as TextCall
from tests.dialogue.screen_driver import Suspecting
from tests.voice.fakes import FRAME, RATE, FakeRecognizer, FakeSynthesizer, FakeTransport, now, vowel
from tests.voice.virtual_time import run_virtual
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import EndCall, Escalate, HoldForNurse
from voice.events import (
    ActionTaken,
    CallEnded,
    CallerAudio,
    CallerHangup,
    CallEvent,
    CallInfo,
    Dtmf,
    StateChanged,
    TurnRecorded,
)
from voice.hub import Engines

RED_FLAG = {"en": "chest pain spreading to my left arm and I'm sweating", "zh": "胸口疼，疼到左胳膊，出冷汗"}


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_silent_caller_after_a_red_flag_is_held_for_a_nurse_never_hung_up_on(lang: str) -> None:
    c = TextCall(lang)
    await c.open()
    await c.say(RED_FLAG[lang])
    assert c.escalated()
    first = await c.silence(1)
    assert not c.actions_of(first, HoldForNurse)
    held = await c.silence(2)
    (hold,) = c.actions_of(held, HoldForNurse)
    assert hold.red_flags == ("cardiac_chest_pain",)
    (alert,) = c.actions_of(held, Escalate)
    assert alert.level == "nurse" and "silent" in alert.reason
    for n in range(3, 12):
        out = await c.silence(n)
        assert out and not c.actions_of(out, EndCall) and not c.actions_of(out, HoldForNurse)  # alerted once
    r = c.d.result().to_json()
    assert r["held_for_nurse"] and r["end_reason"] is None and not c.ended()
    held_label = {"en": "line held open, nurse alerted", "zh": "保持通话，已通知护士"}[lang]
    assert held_label in r["summary"]["recommendation"]  # the record shows what was done


async def test_a_follow_up_call_that_escalated_is_held_too() -> None:
    from tests.dialogue.screen_driver import NUMBERS

    factory = build_dialogue_factory(chat_model=None, emergency_numbers=NUMBERS, llm_capable=False)
    info = CallInfo("fu-hold", "zh", "text", "followup", {"patient_name": "王芳", "department": "general_surgery"})
    c = TextCall("zh")
    c.d = factory(info)
    await c.open()
    for a in ["是我", "方便", "还好", "没有", "没有", "没有", "没有", "三分", "有点红", "有，在流脓"]:
        await c.say(a)
    await c.say("有，昨晚烧到三十八度五")  # fever + pus: red flag
    assert c.d.escalated
    outs = [await c.silence(n) for n in range(1, 7)]
    assert any(c.actions_of(o, HoldForNurse) for o in outs)
    assert not any(c.actions_of(o, EndCall) for o in outs) and not c.d.ended


@pytest.mark.parametrize(("lang", "mumble"), [("en", "uhh... help"), ("zh", "嗯…啊…")])
async def test_an_unclear_reply_to_the_transfer_offer_is_not_hung_up_on(lang: str, mumble: str) -> None:
    c = TextCall(lang)
    await c.open()
    await c.say(RED_FLAG[lang])
    outs = [await c.say(mumble) for _ in range(4)]
    assert not any(c.actions_of(o, EndCall) for o in outs) and not c.d.ended
    assert sum(len(c.actions_of(o, HoldForNurse)) for o in outs) == 1
    out = await c.say({"en": "no thanks", "zh": "不用了"}[lang])  # a clear no is the caller's choice
    assert c.actions_of(out, EndCall)


async def test_the_caller_who_speaks_again_is_answered() -> None:
    c = TextCall("en")
    await c.open()
    await c.say(RED_FLAG["en"])
    await c.silence(1)
    await c.silence(2)
    out = await c.say("yes please, a nurse")
    assert "putting you through" in c.text(out)


async def test_before_any_red_flag_silence_still_ends_the_call() -> None:
    c = TextCall("en")
    await c.open()
    await c.silence(1)
    await c.silence(2)
    out = await c.silence(3)
    assert c.actions_of(out, EndCall)


# --- through the call loop ------------------------------------------------------------------------
# The real voice.call.Call and the real dialogue, on the fakes of tests/voice/fakes.py (a paced transport,
# a recogniser that reads the pitch of the caller's "vowel" back as the scripted words, a tone synthesiser)
# and on virtual time (tests/voice/virtual_time.py): the product's own 8 s re-prompt timer runs exactly as
# in production, whatever the machine's load. The caller acts on the call's events, never after a wait.
YES, CHEST, FACE, WHAT, MOAN = 130.0, 170.0, 210.0, 250.0, 330.0  # MOAN is no word the recogniser knows
FACE_TEXT = "my mum's face looks a bit funny"
TEXTS = {YES: "yes", CHEST: RED_FLAG["en"], FACE: FACE_TEXT, WHAT: "what?"}
HOLD = "I can't hear you. I'm alerting a nurse now, and I'll keep this line open."  # prompts/en/confirm.yaml
ADVICE = "What you describe can be serious. Please call 911 for an ambulance now. If you are alone, unlock the door."
SILENT_RED_FLAG_WAIT_S = TurnTaking().silence_reprompt_s + 1.0  # one re-prompt period (+ tick and first audio)


class _Line:
    """One call through the real loop. The line carries a 20 ms frame every 20 ms, as a phone line does
    (silence between utterances); the caller speaks when the test says so."""

    def __init__(self, *, suspicions: dict[str, list[tuple[str, str]]] | None = None,
                 turn_taking: TurnTaking | None = None) -> None:
        factory = build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911"}, llm_capable=False)

        def dialogue(info: CallInfo) -> Any:
            d: Any = factory(info)
            if suspicions:  # the semantic layer's suspicions, injected (tests/dialogue/screen_driver.py)
                d.x = Suspecting(d.x, suspicions)
            return d

        self.transport = FakeTransport()
        self.synthesizer = FakeSynthesizer()
        self.tt = turn_taking or TurnTaking(partial_interval_s=0.0)
        engines = Engines(recognizer=FakeRecognizer(TEXTS), synthesizers={"en": self.synthesizer}, dialogue=dialogue)
        self.call = Call(info=CallInfo("hold-test", "en", "sip"), transport=self.transport, engines=engines,
                         publish=self._publish, turn_taking=self.tt)
        self.seen: list[CallEvent] = []
        self._events: asyncio.Queue[CallEvent] = asyncio.Queue()
        self._speech: tuple[float, int] | None = None  # (pitch, frames still to say)
        self._said = asyncio.Event()
        self.last_word = now()  # loop time the caller last spoke
        self._tasks: list[asyncio.Task[Any]] = []

    async def _publish(self, event: CallEvent) -> None:
        self.seen.append(event)
        await self._events.put(event)

    async def _feed(self) -> None:
        n, t0 = 0, now()
        while True:
            samples = np.zeros(FRAME, np.int16)
            if self._speech is not None:
                f0, left = self._speech
                samples = vowel(f0, n * FRAME, FRAME)
                self._speech = (f0, left - 1) if left > 1 else None
                if self._speech is None:
                    self.last_word = now()
                    self._said.set()
            self.transport.inbound.put_audio(CallerAudio(Pcm(samples, RATE)))
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * 0.02 - now()))

    async def __aenter__(self) -> _Line:
        self._tasks = [asyncio.create_task(self._feed()), asyncio.create_task(self.call.run())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.output.close()

    @property
    def running(self) -> bool:
        return not self._tasks[1].done()

    async def say(self, f0: float, seconds: float) -> None:
        """The caller speaks `seconds` of the utterance named by `f0`; returns once it is said."""
        self._said.clear()
        self._speech = (f0, round(seconds / 0.02))
        await self._said.wait()

    def press(self, digit: str) -> None:
        self.transport.inbound.put(Dtmf(digit))

    async def next(self, pred: Callable[[CallEvent], bool], within_s: float = 30.0) -> Any:
        """The next event that matches; `within_s` of virtual time, so a missing event fails, not hangs."""
        try:
            async with asyncio.timeout(within_s):
                while True:
                    event = await self._events.get()
                    if pred(event):
                        return event
        except TimeoutError:
            raise AssertionError(f"no such event within {within_s} s; the last ones: {self._story()}") from None

    def _story(self) -> list[str]:
        told = [f"{type(e.action).__name__} {getattr(e.action, 'level', '')}" if isinstance(e, ActionTaken)
                else f"{e.turn.speaker} {e.turn.start_s}-{e.turn.end_s}: {e.turn.text!r}" if isinstance(e, TurnRecorded)
                else type(e).__name__ for e in self.seen if not isinstance(e, StateChanged)]
        return told[-8:]

    async def hang_up(self) -> dict[str, Any]:
        self.transport.inbound.put(CallerHangup("caller hung up"))
        result: dict[str, Any] = await asyncio.wait_for(self._tasks[1], 30)
        return result

    async def through_the_red_flag(self, f0: float = CHEST) -> Any:
        """Consent, then the complaint; returns the caller's complaint turn."""
        await self.next(_bot("recorded"))  # the greeting (prompts/en/dialogue.yaml)
        await self.say(YES, 0.6)
        await self.next(_bot("main problem"))
        await self.say(f0, 2.0)
        return await self.next(_caller(TEXTS[f0]))


def _bot(part: str = "") -> Callable[[CallEvent], bool]:
    return lambda e: isinstance(e, TurnRecorded) and e.turn.speaker == "bot" and part in e.turn.text


def _caller(text: str) -> Callable[[CallEvent], bool]:
    return lambda e: isinstance(e, TurnRecorded) and e.turn.speaker == "caller" and e.turn.text == text


def _action(kind: type, level: str | None = None) -> Callable[[CallEvent], bool]:
    return lambda e: (isinstance(e, ActionTaken) and isinstance(e.action, kind)
                      and (level is None or getattr(e.action, "level", None) == level))


def _speaking(e: CallEvent) -> bool:
    return isinstance(e, StateChanged) and e.state == "speaking"


def test_the_call_loop_keeps_the_line_open_for_a_silent_escalated_caller() -> None:
    async def call() -> None:
        tt = TurnTaking(partial_interval_s=0.0, max_silence_s=30.0)  # the hold outlasts the silence bound
        async with _Line(turn_taking=tt) as line:
            await line.through_the_red_flag()
            await line.next(_action(Escalate, "emergency_ambulance"))
            advice = await line.next(_bot("ambulance"))
            assert advice.turn.text.startswith(ADVICE) and advice.turn.protected and not advice.turn.interrupted
            # the caller says nothing more: one re-prompt, a re-prompt period after the advice and the offer ...
            reprompt = await line.next(_bot())
            assert reprompt.turn.text.startswith("Are you still there? If you can't speak, stay on the line")
            assert tt.silence_reprompt_s <= reprompt.turn.start_s - advice.turn.end_s <= SILENT_RED_FLAG_WAIT_S
            # ... then, one more period on, the hold and the nurse alert the console shows
            hold = await line.next(_action(HoldForNurse), within_s=SILENT_RED_FLAG_WAIT_S)
            assert hold.action.red_flags == ("cardiac_chest_pain",)
            alert = await line.next(_action(Escalate))
            assert alert.action.level == "nurse" and "silent" in alert.action.reason
            held = await line.next(_bot())
            assert held.turn.text.startswith(HOLD)
            assert tt.silence_reprompt_s <= held.turn.start_s - reprompt.turn.end_s <= SILENT_RED_FLAG_WAIT_S
            for _ in range(3):  # the line stays open: the bot keeps telling the caller help is coming
                before, held = held, await line.next(_bot())
                assert held.turn.text == "A nurse has been alerted. Please stay on the line. If you can, call 911."
                assert tt.silence_reprompt_s <= held.turn.start_s - before.turn.end_s <= SILENT_RED_FLAG_WAIT_S
            assert now() - line.last_word > tt.max_silence_s  # past the silence bound of a call not escalated
            assert line.running and line.transport.hung_up is None
            result = await line.hang_up()
            ended = [e for e in line.seen if isinstance(e, CallEnded)]
            assert [e.reason for e in ended] == ["caller hung up"] and line.transport.hung_up is None
            assert not [e for e in line.seen if _action(EndCall)(e)]
            assert len([e for e in line.seen if _action(HoldForNurse)(e)]) == 1  # alerted once
            assert len([e for e in line.seen if _action(Escalate, "nurse")(e)]) == 1
            assert result.held_for_nurse and result.escalated and "cardiac_chest_pain" in result.red_flags
            turns = [e.turn for e in line.seen if isinstance(e, TurnRecorded)]
            assert [t.text for t in turns if t.speaker == "caller"] == ["yes", RED_FLAG["en"]]

    run_virtual(call(), limit_s=600)


def test_a_moan_without_words_is_no_answer_the_hold_still_comes() -> None:
    """A caller who may have collapsed moans or breathes into the phone: speech the recogniser finds no
    words in is not a turn, so it does not start the re-prompts over; the nurse is alerted all the same."""

    async def call() -> None:
        async with _Line() as line:
            await line.through_the_red_flag()
            await line.next(_bot("ambulance"))
            reprompt = await line.next(_bot())
            assert reprompt.turn.text.startswith("Are you still there?")
            await line.say(MOAN, 1.0)
            held = await line.next(_bot())
            assert held.turn.text.startswith(HOLD)
            assert [e for e in line.seen if _action(HoldForNurse)(e)] and line.running
            result = await line.hang_up()
            assert result.held_for_nurse

    run_virtual(call(), limit_s=300)


def test_an_unanswered_suspected_red_flag_escalates_through_the_call_loop() -> None:
    async def call() -> None:
        async with _Line(suspicions={FACE_TEXT: [("face_droop", "face looks a bit funny")]}) as line:
            await line.through_the_red_flag(FACE)
            question = await line.next(_bot())
            assert question.turn.text == "So the face looks droopy on one side, is that right?"
            assert not [e for e in line.seen if _action(Escalate)(e)]  # suspected: asked first, not yet escalated
            # no answer: when unsure, escalate (a re-prompt period after the question), then hold the line
            esc = await line.next(_action(Escalate, "emergency_ambulance"), within_s=SILENT_RED_FLAG_WAIT_S)
            assert "stroke_signs" in esc.action.red_flags
            advice = await line.next(_bot("ambulance"))
            assert advice.turn.text.startswith(ADVICE) and advice.turn.protected and not advice.turn.interrupted
            await line.next(_action(HoldForNurse), within_s=SILENT_RED_FLAG_WAIT_S)
            assert line.running
            result = await line.hang_up()
            assert "stroke_signs" in result.red_flags and result.held_for_nurse
            assert result.confirmations[0].answer == "no answer"

    run_virtual(call(), limit_s=300)


def test_the_emergency_instruction_is_heard_in_full_when_the_caller_talks_over_it() -> None:
    async def call() -> None:
        async with _Line() as line:
            await line.through_the_red_flag()
            await line.next(_speaking)
            await line.say(WHAT, 1.5)  # at once, over the first words of the instruction
            advice = await line.next(_bot("ambulance"))
            assert advice.turn.protected and advice.turn.interrupted  # the rest of the reply was cut ...
            assert advice.turn.heard_text.startswith(ADVICE)  # ... once the whole instruction had been heard
            await line.next(_caller("what?"))
            answer = await line.next(_bot())
            assert not answer.turn.text.startswith(ADVICE[:30])  # heard once in full: not said again
            assert line.synthesizer.said.count("What you describe can be serious.") == 1
            await line.hang_up()

    run_virtual(call(), limit_s=300)


def test_the_emergency_instruction_cut_by_a_key_press_is_repeated_in_full() -> None:
    async def call() -> None:
        async with _Line() as line:
            await line.through_the_red_flag()
            await line.next(_speaking)
            line.press("1")  # a key press always interrupts, protected advice too
            cut = await line.next(_bot("ambulance"))
            assert cut.turn.interrupted and not (cut.turn.heard_text or "").startswith(ADVICE)
            again = await line.next(_bot())
            assert again.turn.text.startswith(ADVICE) and again.turn.protected and not again.turn.interrupted
            await line.hang_up()

    run_virtual(call(), limit_s=300)
