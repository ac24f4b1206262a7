"""`carecall simulate --voice`: the same simulated callers, heard through the real server. The server
runs in this process (the app `carecall serve` runs, on real sockets, with its real ASR and TTS); each
caller line is synthesised by the project's own voice for its language and played on a live WebSocket
call in real time, so the dialogue only knows what the recogniser heard. The one addition is an
observer around the dialogue factory, so that the caller can read the dialogue's `pending_question()`
(what a nurse's script would show) instead of parsing the bot's audio."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dialogue.evaluation.caller import SimulatedCaller
from dialogue.evaluation.cases import ConversationCase
from dialogue.evaluation.metrics import Row
from dialogue.evaluation.pending import pending_of
from dialogue.knowledge import knowledge
from dialogue.simulate import MAX_TURNS, Conversation, confirmed_red_flag, expected_red_flags
from voice.audio import Pcm

log = logging.getLogger("carecall.simulate.voice")
REPLY_TIMEOUT_S = 60.0  # a loaded 2-core machine may take this long to hear, think and speak


class _Observed:
    """Wraps the server's dialogue factory and remembers each call's dialogue by call id."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: dict[str, Any] = {}

    def __call__(self, info: Any) -> Any:
        d = self.inner(info)
        self.calls[info.call_id] = d
        return d


async def _speech(synth: Any, text: str) -> Pcm:
    chunks = [c async for c in synth.synthesize(text)]
    if not chunks:
        raise RuntimeError(f"the voice produced no audio for {text!r}")
    return Pcm.concat(chunks, chunks[0].sample_rate)


async def _call(case: ConversationCase, url: str, observed: _Observed, synths: dict[str, Any]) -> Conversation:
    from voice.caller import CallerSession

    kn = knowledge()
    caller = SimulatedCaller(case, kn)
    rf_findings = kn.red_flag_findings()
    said: list[str] = []
    questions = 0
    confirmation = False
    end_reason = "max_turns"
    async with CallerSession(url, case.lang) as line:
        started = await line.wait_event("started", timeout=REPLY_TIMEOUT_S)
        if started is None:
            raise RuntimeError("the server did not start the call")
        d = observed.calls[started["call_id"]]
        await line.wait_bot_quiet(since=0.0, quiet_s=0.8, timeout=REPLY_TIMEOUT_S)
        for _ in range(MAX_TURNS):
            if line.ended.is_set() or d.ended or getattr(d, "transferred", False):
                end_reason = d.ended or ("transferred" if getattr(d, "transferred", False) else "") or "ended"
                break
            bot = [t["text"] for t in line.report.turns if t["speaker"] == "bot"]
            pending = pending_of(d)
            if pending is None and getattr(d, "escalated", None):
                end_reason = "escalated"  # held for a nurse after a red flag: nothing more to answer
                break
            reply = caller.reply(pending, bot[-1] if bot else "")
            questions += reply.counted
            confirmation |= reply.confirmation and bool(set(reply.findings) & rf_findings)
            said.append(reply.text)
            sent = await line.say(await _speech(synths[case.lang], reply.text))
            if not await line.wait_bot_quiet(since=sent, quiet_s=1.0, timeout=REPLY_TIMEOUT_S):
                if not line.ended.is_set():
                    end_reason = "no_reply"
                    break
        await line.hang_up()
        turns = [(str(t["speaker"]), str(t["text"])) for t in line.report.turns]  # the caller as heard
    result = d.result()
    confirmation |= confirmed_red_flag(result, rf_findings)
    row = Row(
        id=case.id, lang=case.lang, pred=result.disposition or "", department=result.department, gold=case.gold,
        gold3=case.gold3_or_derived, departments=list(case.departments), red_flags=list(result.red_flags),
        confirmation_asked=confirmation, questions=questions, expected_red_flags=expected_red_flags(case, kn),
        end_reason=end_reason, notes=[f"said: {t}" for t in said],
    )
    return Conversation(row, turns + [("said", t) for t in said], result, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running_server() -> AsyncIterator[tuple[str, _Observed, dict[str, Any]]]:
    """The CareCall app on a free loopback port, in this process; yields (ws url, observer, voices)."""
    import uvicorn

    from server import create_app, open_runtime
    from settings import Settings

    data = tempfile.TemporaryDirectory(prefix="carecall-simulate-")
    overrides: dict[str, Any] = {"llm_port": free_port()}
    if "CARECALL_DATA_DIR" not in os.environ:  # simulated calls stay out of the real call records
        overrides["data_dir"] = Path(data.name)
    settings = Settings(**overrides)
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def observed_runtime(s: Settings) -> AsyncIterator[Any]:
        async with open_runtime(s) as rt:
            obs = _Observed(rt.hub.engines.dialogue)
            rt.hub.engines = dataclasses.replace(rt.hub.engines, dialogue=obs)
            holder.update(observer=obs, synths=rt.hub.engines.synthesizers)
            yield rt

    port = free_port()
    app = create_app(settings, runtime_factory=observed_runtime)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws_max_size=4 * settings.max_ws_message_bytes))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the start-up error
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/ws/call", holder["observer"], holder["synths"]
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
        data.cleanup()


async def simulate_voice(cases: list[ConversationCase]) -> list[Conversation]:
    out = []
    async with running_server() as (url, observed, synths):
        for c in cases:
            out.append(await _call(c, url, observed, synths))
    return out
