"""The real CareCall app (server.create_app: widget, signalling, /ws/call, the real call loop with
Whisper and Piper) with a small scripted dialogue in place of the triage brain, so the browser tests
exercise every piece the widget touches without depending on the clinical content.

    python -m tests.web.widget.scripted_server --port 8081
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from server import Runtime, create_app, turn_taking
from settings import Settings
from voice.asr import WhisperRecognizer
from voice.call import Call
from voice.conversation import (
    CallerUtterance,
    DialogueOutput,
    Escalate,
    ExpectAnswer,
    Outcome,
)
from voice.events import CallInfo
from voice.hub import CallHub, Engines
from voice.result import CallResult, Progress
from voice.tts.piper import PiperSynthesizer

GREETING = (
    "Hello, this is the CareCall nurse line. I will ask you a few questions about how you feel, "
    "and then tell you where to get care. Please tell me what is wrong today."
)
RED_FLAG = re.compile(r"chest|arm|sweat", re.I)


class ScriptedDialogue:
    def __init__(self, info: CallInfo) -> None:
        self.info = info
        self.flagged = False
        self.turns = 0

    async def opening(self) -> AsyncIterator[DialogueOutput]:
        yield GREETING
        yield ExpectAnswer("free")

    async def respond(self, utterance: CallerUtterance) -> AsyncIterator[DialogueOutput]:
        self.turns += 1
        if RED_FLAG.search(utterance.text):
            self.flagged = True
            yield Escalate(reason="chest pain spreading to the arm", red_flags=("chest_pain_radiating",))
            yield Outcome(Progress("triage", "emergency_ambulance", "Emergency"))
            yield "This could be a heart problem. Please call an ambulance now. Do not drive yourself."
            return
        yield Outcome(Progress("triage", "consultation_24", "General medicine"))
        yield ("Thank you for telling me. I am sorry you feel unwell. "
               "How long have you had these symptoms, and have they been getting worse over time?")

    async def on_silence(self, count: int) -> AsyncIterator[DialogueOutput]:
        yield "Are you still there?"

    async def on_dtmf(self, digit: str) -> AsyncIterator[DialogueOutput]:
        if False:
            yield ""

    def heard(self, text: str, interrupted: bool) -> None:
        pass

    def result(self) -> CallResult:
        if self.flagged:
            return CallResult(mode="triage", disposition="emergency_ambulance", department="Emergency",
                              red_flags=("chest_pain_radiating",))
        return CallResult(mode="triage", disposition="consultation_24", department="General medicine")


@asynccontextmanager
async def scripted_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="infer")
    try:
        engines = Engines(
            recognizer=WhisperRecognizer.from_settings(settings, executor),
            synthesizers={"en": PiperSynthesizer.from_settings(settings, executor)},
            dialogue=ScriptedDialogue,
        )
        call_factory = functools.partial(Call, turn_taking=turn_taking(settings), recording_dir=None)
        hub = CallHub(engines, call_factory, settings.max_concurrent_calls)
        parts: dict[str, Any] = {"settings": settings, "executor": executor, "chat_model": None, "hub": hub}
        if "metrics" in {f.name for f in dataclasses.fields(Runtime)}:
            from voice.metrics import CallMetrics

            parts["metrics"] = CallMetrics()
            hub.add_observer(parts["metrics"])
        yield Runtime(**parts)
        await hub.drain()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(Settings(), runtime_factory=scripted_runtime)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="info", timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
