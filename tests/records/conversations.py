"""Recorded calls made by the real dialogue (TriageDialogue / FollowUpDialogue) from scripted caller
lines, published as the call loop publishes them (CallStarted, TurnRecorded, ActionTaken, CallEnded),
for the QA, tags and dashboard tests. No audio and no models: what the call loop adds (timings, the
heard part of an interrupted reply, the recogniser's unsure words) is given per turn, so a test can
plant a known defect (a barge-in over the emergency instruction, a slow turn, a misheard word)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from dialogue.factory import build_dialogue_factory
from voice.conversation import CallerUtterance, EndCall, Transfer
from voice.events import ActionTaken, CallEnded, CallEvent, CallInfo, CallStarted, Turn, TurnMetrics, TurnRecorded


@dataclass(frozen=True, slots=True)
class HeardTurn(Turn):
    """A turn as the `voice` helper's recogniser reports it: with the words it was unsure of."""

    uncertain_words: tuple[tuple[str, float], ...] = ()


@dataclass
class Script:
    """What the call loop would add. Keys are turn indexes of the finished call's transcript."""

    interrupt_at: dict[int, float] = field(default_factory=dict)  # bot turn → share heard (0..1)
    latency_ms: dict[int, float] = field(default_factory=dict)  # bot turn → voice-to-voice
    gap_before_s: dict[int, float] = field(default_factory=dict)  # turn → silence before it
    uncertain: dict[int, tuple[tuple[str, float], ...]] = field(default_factory=dict)  # caller turn → words
    transfer_works: bool = True  # the transport could put the call through when asked


def scripted_call(
    call_id: str,
    lines: list[str],
    *,
    language: str = "en",
    mode: str = "triage",
    channel: str = "websocket",
    params: dict[str, Any] | None = None,
    script: Script | None = None,
    started_at: float | None = None,
    emergency_numbers: dict[str, str] | None = None,
) -> list[CallEvent]:
    coro = _run(call_id, lines, language, mode, channel, params or {}, script or Script(), started_at,
                emergency_numbers or {"en": "911", "zh": "120"})  # fmt: skip
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from a running loop (Playwright's sync API): its own thread
        return pool.submit(asyncio.run, coro).result()


async def _run(
    call_id: str,
    lines: list[str],
    language: str,
    mode: str,
    channel: str,
    params: dict[str, Any],
    script: Script,
    started_at: float | None,
    numbers: dict[str, str],
) -> list[CallEvent]:
    info = CallInfo(call_id=call_id, language=language, channel=channel, mode=mode, params=params)  # type: ignore[arg-type]
    dialogue = build_dialogue_factory(chat_model=None, emergency_numbers=numbers, llm_capable=False)(info)
    events: list[CallEvent] = [CallStarted(call_id, info, started_at or time.time())]
    clock = 0.0
    index = 0
    end_reason: str | None = None

    async def bot(outputs: Any) -> None:
        nonlocal clock, index, end_reason
        parts: list[str] = []
        after: list[Any] = []
        async for out in outputs:
            if isinstance(out, str):
                parts.append(out)
            elif isinstance(out, EndCall | Transfer):
                after.append(out)
                events.append(ActionTaken(call_id, out))
            elif not isinstance(out, str) and type(out).__name__ in ("Escalate", "Outcome"):
                events.append(ActionTaken(call_id, out))
        text = " ".join(p.strip() for p in parts if p.strip()) if language != "zh" else "".join(parts)
        if text:
            clock += script.gap_before_s.get(index, 0.4)
            share = script.interrupt_at.get(index)
            heard = text[: int(len(text) * share)] if share is not None else None
            dialogue.heard(heard if heard is not None else text, share is not None)
            duration = 0.06 * len(text) * (share if share is not None else 1.0)
            metrics = TurnMetrics(
                endpoint_wait_ms=300.0, asr_ms=200.0, llm_first_token_ms=5.0, tts_first_audio_ms=90.0,
                voice_to_voice_ms=script.latency_ms.get(index, 700.0 + 10 * index),
            ) if index else None  # fmt: skip
            events.append(
                TurnRecorded(call_id, Turn(index, "bot", text, round(clock, 3), round(clock + duration, 3),
                                           interrupted=share is not None, heard_text=heard, metrics=metrics))
            )  # fmt: skip
            clock += duration
            index += 1
        for action in after:
            if isinstance(action, EndCall):
                end_reason = action.reason
            elif isinstance(action, Transfer) and script.transfer_works:
                end_reason = "transferred"

    await bot(dialogue.opening())
    for line in lines:
        if end_reason is not None:
            break
        clock += script.gap_before_s.get(index, 0.5)
        duration = 0.05 * len(line) + 0.3
        events.append(
            TurnRecorded(
                call_id,
                HeardTurn(index, "caller", line, round(clock, 3), round(clock + duration, 3),
                          uncertain_words=script.uncertain.get(index, ())),
            )
        )  # fmt: skip
        clock += duration
        turn = index
        index += 1
        await bot(dialogue.respond(CallerUtterance(text=line, turn_index=turn)))
    events.append(CallEnded(call_id, end_reason or "caller hung up", dialogue.result()))
    return events


# --- the calls the QA tests use ----------------------------------------------------------------------
CLEAN_TRIAGE = ["yes", "I have had a sore throat for two days", "no", "no", "no", "no", "no", "no", "no", "no"]
CHEST_PAIN = ["yes", "I have chest pain", "yes it goes down my left arm", "no"]
FOLLOWUP_PARAMS = {"patient_name": "Wang Fang", "department": "general_surgery"}
FOLLOWUP_LINES = ["yes", "yes", "no", "no", "no", "no", "no", "3", "yes", "no", "no", "yes", "yes", "no", "no",
                  "no", "yes", "yes", "yes", "I take my tablets twice a day", "5", "nothing"]  # fmt: skip
