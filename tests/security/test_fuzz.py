"""Fuzzing every call entry point of the real server at once, beside a good call.

Seeded and bounded: at least 2,000 malformed inputs per entry point (/ws/call, Media Streams,
/widget/token, /widget/rtc/offer, SIP over UDP), sent over few connections. Passing means: every
input got a clear refusal (or was ignored where the protocol says so), no connection died abnormally,
the server logged no unhandled exception, and a good call made meanwhile was heard, answered and
not slowed down beyond the stated bound."""

from __future__ import annotations

import asyncio
import os
import statistics

import httpx
import pytest

from tests.security.clients import fuzz_media_streams, fuzz_sip, fuzz_widget, fuzz_ws_call, loopback_offer
from voice.caller import scripted_call
from voice.resample import resample

pytestmark = pytest.mark.models

SEED = int(os.environ.get("CARECALL_FUZZ_SEED", "20261202"))
PER_ENTRY = 2000
# The good call's voice-to-voice latency under attack may exceed a quiet run's by 20% plus 300 ms of
# scheduling noise (the machine is shared: other processes move the numbers by more than 20% alone).
SLOWDOWN = 1.2
SLACK_MS = 300.0


async def good_call(target, say) -> dict:  # type: ignore[no-untyped-def]
    utterances = [resample(say(text, "en"), 16000) for text in
                  ("I have had a sore throat since yesterday.", "No, I can breathe normally.")]
    report = await scripted_call(target.ws_call, "en", utterances)
    callers = " ".join(t["text"].lower() for t in report.turns if t["speaker"] == "caller")
    return {"heard": "throat" in callers, "bot_turns": sum(t["speaker"] == "bot" for t in report.turns),
            "latencies_ms": report.latencies_ms}


async def test_fuzzers_leave_the_server_and_a_good_call_unharmed(target, say) -> None:
    offer = await loopback_offer()
    quiet = await good_call(target, say)
    assert quiet["heard"] and quiet["latencies_ms"], quiet
    offset = target.log_offset()

    async def attacks() -> list:
        ws = fuzz_ws_call(target.base, target.ws_call, SEED, starts=1000, in_call=PER_ENTRY - 1000)
        ms = fuzz_media_streams(target.media_stream, SEED, forged=600, in_call=PER_ENTRY - 600)
        widget = fuzz_widget(target.base, offer, SEED, PER_ENTRY)
        ws_out, ms_out, (tok_out, offer_out) = await asyncio.gather(ws, ms, widget)
        return [ws_out, ms_out, tok_out, offer_out]

    attacked, outcomes = await asyncio.gather(good_call(target, say), attacks())

    for out in outcomes:
        assert out.sent >= PER_ENTRY, f"{out.entry}: only {out.sent} inputs sent"
        assert not out.problems, f"{out.entry} (seed {SEED}): {out.problems}"
    assert target.server.process.poll() is None, "the server died"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{target.base}/healthz")).status_code == 200
    unhandled = target.unhandled_since(offset)
    assert not unhandled, "unhandled exceptions in the server log:\n" + "\n---\n".join(unhandled[:3])

    assert attacked["heard"] and attacked["bot_turns"] >= 2, attacked
    q, a = statistics.median(quiet["latencies_ms"]), statistics.median(attacked["latencies_ms"])
    print(f"good call voice-to-voice p50: quiet {q:.0f} ms, under attack {a:.0f} ms "
          f"({', '.join(f'{o.entry} {o.sent}' for o in outcomes)})")
    assert a <= SLOWDOWN * q + SLACK_MS, f"good call slowed from {q:.0f} ms to {a:.0f} ms under attack"


async def test_sip_fuzz_leaves_the_endpoint_answering(target) -> None:
    """Malformed datagrams at the real SIP endpoint (UDP): no crash, no traceback in the log (a bad
    CSeq or m= line is one log line, finding #5), and a well-formed INVITE afterwards still gets
    its answer."""
    offset = target.log_offset()
    out = await fuzz_sip(target.sip_port, SEED, PER_ENTRY)
    assert out.sent >= PER_ENTRY and not out.problems, f"SIP (seed {SEED}): {out.problems}"
    assert target.server.process.poll() is None, "the server died"
    unhandled = target.unhandled_since(offset)
    assert not unhandled, f"{len(unhandled)} tracebacks in the server log, first:\n{unhandled[0]}"
