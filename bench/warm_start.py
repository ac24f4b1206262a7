"""Is the first call after a start as fast as later ones? Starts the real server, waits for its warm-up
(`/healthz` warm.done), then places calls one after another (English and Mandarin in turn, the scripts of
bench/latency.py) and reports per call: the greeting's first audio after the start message, TTS first
audio and voice-to-voice per reply (caller's clock), ASR time, and the phrase-cache misses the call caused.

    python -m bench.warm_start [--calls 5] [--no-wait]

`--no-wait` calls at once, during the warm-up (what a caller who rings right after a restart gets).
Results in bench/results/warm_start.json and the README (`<!-- bench:warm-start -->`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import RunningServer, start_server, stop_server
from bench.latency import breakdown, synthesise_scripts, wait_warm
from bench.report import update_readme
from voice.audio import Pcm
from voice.caller import CallerSession, fetch_call_token

RESULTS = Path(__file__).resolve().parent / "results"


def cache_misses(server: RunningServer) -> dict[str, int]:
    warm = httpx.get(f"{server.base_url}/healthz", timeout=5).json().get("warm") or {}
    return {lang: c["misses"] for lang, c in (warm.get("cache") or {}).items()}


async def one_call(server: RunningServer, lang: str, lines: list[Pcm]) -> dict[str, Any]:
    before = cache_misses(server)
    t0 = time.monotonic()
    async with CallerSession(server.ws_url, lang) as line:
        await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=60)
        greeting = line.bot_audio_times[0] - t0 if line.bot_audio_times else None
        started = next((e["_at"] for e in line.report.events if e.get("type") == "started"), None)
        after_started = None if greeting is None or started is None else line.bot_audio_times[0] - started
        for audio in lines:
            if line.ended.is_set():
                break
            sent = await line.say(audio)
            await line.wait_bot_quiet(since=sent, quiet_s=1.0, timeout=30)
        await line.hang_up()
        client = line.latencies()
    bd = breakdown(line.report.turns)
    after = cache_misses(server)

    def med(values: list[float]) -> float | None:
        return round(statistics.median(values)) if values else None

    return {"language": lang, "greeting_first_audio_ms": None if greeting is None else round(greeting * 1000),
            "greeting_after_started_ms": None if after_started is None else round(after_started * 1000),
            "voice_to_voice_ms": {"p50": med(client), "max": round(max(client)) if client else None},
            "tts_first_audio_ms": {"p50": med(bd["tts_first_audio_ms"]),
                                   "max": round(max(bd["tts_first_audio_ms"])) if bd["tts_first_audio_ms"] else None},
            "asr_ms_p50": med(bd["asr_ms"]), "replies": len(client),
            "cache_misses": after.get(lang, 0) - before.get(lang, 0)}


async def run(server: RunningServer, audio: dict[str, list[Pcm]], calls: int) -> list[dict[str, Any]]:
    # The caller's own first HTTP client costs ~0.5 s here (its TLS context): paid before the first call,
    # so the first call's figures are the server's. A token is only spent when its call opens.
    await fetch_call_token(server.ws_url, "en")
    out = []
    for i in range(calls):
        for lang in ("en", "zh"):
            row = await one_call(server, lang, audio[lang])
            row["call"] = i + 1
            print(row, flush=True)
            out.append(row)
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| call | language | greeting first audio (after `started`) | voice-to-voice p50 / max "
             "| TTS first audio p50 / max | ASR p50 | cache misses |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        v, t = r["voice_to_voice_ms"], r["tts_first_audio_ms"]
        lines.append(f"| {r['call']} | {r['language']} | {r['greeting_first_audio_ms']} "
                     f"({r['greeting_after_started_ms']}) ms "
                     f"| {v['p50']} / {v['max']} ms | {t['p50']} / {t['max']} ms | {r['asr_ms_p50']} ms "
                     f"| {r['cache_misses']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="rounds (one English and one Mandarin call each)")
    parser.add_argument("--no-wait", action="store_true", help="call during the warm-up instead of after it")
    args = parser.parse_args()
    audio = synthesise_scripts()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server")
        try:
            warm = {} if args.no_wait else wait_warm(server, timeout_s=2400)
            print("warm start:", warm, flush=True)
            load = os.getloadavg()
            rows = asyncio.run(run(server, audio, args.calls))
            load_after = os.getloadavg()
        finally:
            stop_server(server.process)
    body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "waited_for_warm_up": not args.no_wait, "warm": warm,
            "load_average_1min": [round(load[0], 1), round(load_after[0], 1)], "calls": rows}
    RESULTS.mkdir(exist_ok=True)
    name = "warm_start_no_wait.json" if args.no_wait else "warm_start.json"
    (RESULTS / name).write_text(json.dumps(body, indent=2))
    md = table(rows)
    print(md)
    if not args.no_wait:
        state = ("after the whole warm-up" if warm.get("done") else f"the warm-up had rendered "
                 f"{warm.get('rendered')} of {warm.get('clauses')} clauses when the calls began")
        update_readme("warm-start", f"Measured {body['when']} on {body['machine']}, load average "
                                    f"{body['load_average_1min'][0]} → {body['load_average_1min'][1]} "
                                    f"(`python -m bench.warm_start`; {state}):\n\n{md}")


if __name__ == "__main__":
    main()
