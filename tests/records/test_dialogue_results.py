"""The real dialogue brain's results (dialogue/triage.py, dialogue/followup.py, rules only, no LLM)
driven as the call loop drives them, through the real CallRecorder: the record holds findings with
the caller's words and turn, red flags, disposition, department, SBAR and follow-up answers."""

from __future__ import annotations

import time
from typing import Any

from dialogue.factory import build_dialogue_factory
from records.recorder import CallRecorder
from records.repository import get_call
from voice.conversation import CallerUtterance
from voice.events import ActionTaken, CallEnded, CallInfo, CallStarted, Turn, TurnRecorded


class LoopDouble:
    """What voice/call.py publishes for a text conversation: turns, actions, the end."""

    def __init__(self, recorder: CallRecorder, call_id: str, lang: str, mode: str, params: dict[str, Any]) -> None:
        factory = build_dialogue_factory(
            chat_model=None, emergency_numbers={"zh": "120", "en": "911"}, llm_capable=False
        )
        self.info = CallInfo(call_id=call_id, language=lang, channel="text", mode=mode, params=params)  # type: ignore[arg-type]
        self.dialogue = factory(self.info)
        self.recorder = recorder
        self.index = 0

    async def _turn(self, speaker: str, text: str) -> None:
        t = Turn(index=self.index, speaker=speaker, text=text, start_s=self.index * 3.0, end_s=self.index * 3.0 + 2)  # type: ignore[arg-type]
        await self.recorder.on_event(TurnRecorded(self.info.call_id, t))
        self.index += 1

    async def _bot(self, outputs: Any) -> None:
        words = []
        async for out in outputs:
            if isinstance(out, str):
                words.append(out)
            else:
                await self.recorder.on_event(ActionTaken(self.info.call_id, out))
        if words:
            await self._turn("bot", " ".join(words))

    async def run(self, utterances: list[str]) -> None:
        await self.recorder.on_event(CallStarted(self.info.call_id, self.info, time.time()))
        await self._bot(self.dialogue.opening())
        for text in utterances:
            idx = self.index
            await self._turn("caller", text)
            await self._bot(self.dialogue.respond(CallerUtterance(text=text, turn_index=idx)))
        await self.recorder.on_event(CallEnded(self.info.call_id, "completed", self.dialogue.result(), None))


async def test_triage_red_flag_call_is_recorded_from_the_dialogues_result(database):
    recorder = CallRecorder(database)
    await LoopDouble(recorder, "dlg-1", "en", "triage", {}).run(
        ["yes", "I have chest pain and it spreads to my left arm", "yes I am sweating", "no"]
    )
    await recorder.aclose()
    with database.session() as s:
        call = get_call(s, "dlg-1")
        assert call.has_red_flags and call.red_flags
        assert call.disposition in ("emergency_ambulance", "emergency")
        assert call.department and call.chief_complaint
        assert set(call.summary) == {"situation", "background", "assessment", "recommendation"}
        chest = [f for f in call.findings if "chest" in f.name]
        assert chest and chest[0].value == "yes" and "chest pain" in chest[0].evidence
        assert chest[0].turn_idx is not None and "chest pain" in call.turns[chest[0].turn_idx].text


async def test_followup_answers_are_recorded(database):
    recorder = CallRecorder(database)
    await LoopDouble(recorder, "dlg-2", "en", "followup", {"patient_name": "Alex", "campaign_id": "disc-1"}).run(
        ["yes it's me", "yes", "no new symptoms", "2", "no", "yes I have them", "no", "yes", "yes", "call 911", "5"]
    )
    await recorder.aclose()
    with database.session() as s:
        call = get_call(s, "dlg-2")
        assert call.mode == "followup" and call.campaign_id == "disc-1"
        assert call.followup_outcomes, call.result
        assert all(o.item for o in call.followup_outcomes)
        assert any(o.evidence for o in call.followup_outcomes)
