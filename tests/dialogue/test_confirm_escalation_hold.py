"""Escalation never abandons the caller (issue 9): after a red flag, silence leads to a hold for a nurse
(a `HoldForNurse` action and a nurse-level `Escalate` that the console shows), the line stays open and the
bot never ends the call itself. Through the dialogue in both languages, and through the real call loop
(voice.call.Call) with the project's own voice as the caller, a fake recogniser and synthesiser of our own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from dialogue.factory import build_dialogue_factory
from tests.dialogue.screen_driver import Call as TextCall
from voice.audio import Pcm
from voice.call import Call, TurnTaking
from voice.conversation import EndCall, Escalate, HoldForNurse
from voice.events import ActionTaken, CallEnded, CallerAudio, CallerHangup, CallEvent, CallInfo, TurnRecorded
from voice.hub import Engines
from voice.ports import Transcript

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
class ScriptedRecognizer:
    """Our own fake engine: the transcript of each caller utterance, in order (audio is real speech)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = list(lines)
        self.heard = 0

    async def transcribe(self, audio: Pcm, language: str, *, partial: bool = False, hints: object = None) -> Transcript:
        text = "" if partial or not self.lines else self.lines.pop(0)
        self.heard += 0 if partial else 1
        return Transcript(text, language, audio.duration, 0.0)


class ToneSynthesizer:
    language = "en"
    sample_rate = 16_000

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        yield Pcm(np.zeros(1600, dtype=np.int16), self.sample_rate)


class LineTransport:
    """A phone line on loopback: the caller's frames in, the bot's audio out (played as soon as sent)."""

    input_rate = 16_000
    output_rate = 16_000

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[object] = asyncio.Queue()
        self.sent_s = 0.0
        self.hung_up: str | None = None

    async def receive(self) -> Any:
        return await self.inbound.get()

    async def send_audio(self, audio: Pcm) -> None:
        self.sent_s += audio.duration

    async def clear(self) -> None:
        return None

    def played_s(self) -> float:
        return self.sent_s

    def mark_turn(self) -> None:
        self.sent_s = 0.0

    async def send_event(self, event: CallEvent) -> None:
        return None

    async def hangup(self, reason: str) -> None:
        self.hung_up = reason

    def speak(self, audio: Pcm) -> None:
        frame = audio.sample_rate // 50
        tail = Pcm(np.zeros(audio.sample_rate, dtype=np.int16), audio.sample_rate)  # 1 s of silence after
        for part in (audio, tail):
            for i in range(0, len(part), frame):
                self.inbound.put_nowait(CallerAudio(Pcm(part.samples[i : i + frame], part.sample_rate)))


async def _next(
    events: asyncio.Queue[CallEvent], pred: Callable[[CallEvent], bool], seen: list[CallEvent]
) -> CallEvent:
    while True:
        ev = await asyncio.wait_for(events.get(), timeout=60)
        seen.append(ev)
        if pred(ev):
            return ev


def _bot_turn(ev: CallEvent) -> bool:
    return isinstance(ev, TurnRecorded) and ev.turn.speaker == "bot"


async def test_the_call_loop_keeps_the_line_open_for_a_silent_escalated_caller(say) -> None:  # type: ignore[no-untyped-def]
    events: asyncio.Queue[CallEvent] = asyncio.Queue()
    seen: list[CallEvent] = []
    asr = ScriptedRecognizer(["yes", RED_FLAG["en"]])
    engines = Engines(
        recognizer=asr,
        synthesizers={"en": ToneSynthesizer()},
        dialogue=build_dialogue_factory(chat_model=None, emergency_numbers={"en": "911"}, llm_capable=False),
    )
    line = LineTransport()

    async def publish(ev: CallEvent) -> None:
        await events.put(ev)

    tt = TurnTaking(silence_reprompt_s=0.3, partial_interval_s=0, speculative_decoding=False)
    call = Call(info=CallInfo("hold-test", "en", "sip"), transport=line, engines=engines, publish=publish,
                turn_taking=tt)
    running = asyncio.ensure_future(call.run())
    try:
        await _next(events, _bot_turn, seen)  # the greeting
        line.speak(say("Yes, that's fine.", "en"))
        await _next(events, lambda e: _bot_turn(e) and "main problem" in e.turn.text, seen)  # type: ignore[union-attr]
        line.speak(say("I have chest pain going down my left arm and I'm sweating.", "en"))
        esc = await _next(events, lambda e: isinstance(e, ActionTaken) and isinstance(e.action, Escalate), seen)
        assert esc.action.level == "emergency_ambulance"  # type: ignore[union-attr]
        # the caller says nothing more: one re-prompt, then the hold and the nurse alert
        await _next(events, lambda e: isinstance(e, ActionTaken) and isinstance(e.action, HoldForNurse), seen)
        alert = await _next(events, lambda e: isinstance(e, ActionTaken) and isinstance(e.action, Escalate), seen)
        assert alert.action.level == "nurse"  # type: ignore[union-attr]
        holds = 0
        while holds < 3:  # the line stays open: the bot keeps telling the caller help is coming
            turn = await _next(events, _bot_turn, seen)
            holds += "nurse has been alerted" in turn.turn.text  # type: ignore[union-attr]
        assert not running.done() and line.hung_up is None
        assert not any(isinstance(e, CallEnded) for e in seen)
        assert not any(isinstance(e, ActionTaken) and isinstance(e.action, EndCall) for e in seen)
        line.inbound.put_nowait(CallerHangup())
        result = await asyncio.wait_for(running, timeout=30)
    finally:
        if not running.done():
            running.cancel()
    ended = next(e for e in seen + [await events.get() for _ in range(events.qsize())] if isinstance(e, CallEnded))
    assert ended.reason == "caller hung up"
    assert result.held_for_nurse and result.escalated and "cardiac_chest_pain" in result.red_flags
    assert asr.heard == 2
