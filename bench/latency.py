"""Voice-to-voice latency over the WebSocket call path, measured on the caller's clock.

Starts the real server on embedded models, plays scripted multi-turn calls in real time (each
answer after the bot's reply, on a live line), and reports per turn: client-side latency (end of
caller speech in the file → first bot audio byte), the server's breakdown, and memory per call.

    python -m bench.latency [--calls 3] [--concurrent 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import RunningServer, start_server, stop_server
from bench.report import percentile, update_readme
from voice.audio import Pcm
from voice.caller import scripted_call

RESULTS = Path(__file__).resolve().parent / "results"

SCRIPTS = {
    "en": [
        "I have had a sore throat since yesterday.",
        "No, I don't have a fever.",
        "No.",
        "About two days.",
        "No, that's all, thank you.",
    ],
    "zh": [
        "我嗓子疼，从昨天开始的。",
        "没有发烧。",
        "没有。",
        "大概两天。",
        "没有了，谢谢。",
    ],
}


def synthesise_scripts() -> dict[str, list[Pcm]]:
    from concurrent.futures import ThreadPoolExecutor

    from settings import Settings
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    settings = Settings()
    ex = ThreadPoolExecutor(1)
    voices = {"en": PiperSynthesizer.from_settings(settings, ex), "zh": MandarinSynthesizer.from_settings(settings, ex)}
    return {lang: [voices[lang].synthesize_blocking(t) for t in lines] for lang, lines in SCRIPTS.items()}


def breakdown(turns: list[dict[str, Any]]) -> dict[str, list[float]]:
    keys = ("endpoint_wait_ms", "asr_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms")
    out: dict[str, list[float]] = {k: [] for k in keys}
    for t in turns:
        m = t.get("metrics") or {}
        if t["speaker"] != "bot" or m.get("voice_to_voice_ms") is None:
            continue
        for k in keys:
            if m.get(k) is not None:
                out[k].append(m[k])
    return out


def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {"n": len(values), "p50": round(statistics.median(values)), "p95": round(percentile(values, 95))}


async def run_calls(server: RunningServer, audio: dict[str, list[Pcm]], calls: int, concurrent: int) -> dict:
    client: list[float] = []
    turns: list[dict[str, Any]] = []
    by_lang: dict[str, list[float]] = {"en": [], "zh": []}
    langs = ["en", "zh"]
    rss_peak = 0.0
    rss_idle = server.rss_mb()

    async def sample_rss(stop: asyncio.Event) -> None:
        nonlocal rss_peak
        while not stop.is_set():
            rss_peak = max(rss_peak, server.rss_mb())
            await asyncio.sleep(0.5)

    for i in range(calls):
        batch = [langs[(i + j) % 2] for j in range(concurrent)]
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_rss(stop))
        reports = await asyncio.gather(*(scripted_call(server.ws_url, lang, audio[lang]) for lang in batch))
        stop.set()
        await sampler
        for lang, report in zip(batch, reports, strict=True):
            client += report.latencies_ms
            by_lang[lang] += report.latencies_ms
            turns += report.turns
    bd = breakdown(turns)
    return {
        "calls": calls * concurrent,
        "concurrent": concurrent,
        "client_voice_to_voice_ms": summary(client),
        "by_language_ms": {k: summary(v) for k, v in by_lang.items()},
        "server_breakdown_ms": {k: summary(v) for k, v in bd.items()},
        "rss_idle_mb": round(rss_idle),
        "rss_peak_mb": round(rss_peak),
        "memory_per_call_mb": round(max(0.0, rss_peak - rss_idle) / concurrent, 1),
    }


def table(results: list[dict]) -> str:
    rows = [
        "| calls at once | turns | voice-to-voice p50 | p95 | en p50 | zh p50 | endpoint wait p50 | ASR p50 "
        "| reply text p50 | TTS first audio p50 | memory per call |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, b, bl = r["client_voice_to_voice_ms"], r["server_breakdown_ms"], r["by_language_ms"]
        rows.append(
            f"| {r['concurrent']} | {c['n']} | {c['p50']} ms | {c['p95']} ms "
            f"| {bl['en']['p50']} ms | {bl['zh']['p50']} ms "
            f"| {b['endpoint_wait_ms']['p50']} ms | {b['asr_ms']['p50']} ms | {b['llm_first_token_ms']['p50']} ms "
            f"| {b['tts_first_audio_ms']['p50']} ms | {r['memory_per_call_mb']} MB |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="rounds of calls (each round alternates en/zh)")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 3])
    args = parser.parse_args()
    audio = synthesise_scripts()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server")
        try:
            for n in args.concurrent:
                rounds = args.calls if n == 1 else max(1, args.calls // 2)
                results.append(asyncio.run(run_calls(server, audio, rounds, n)))
        finally:
            stop_server(server.process)
    RESULTS.mkdir(exist_ok=True)
    body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
            f"{__import__('os').cpu_count()} cores", "runs": results}
    (RESULTS / "latency.json").write_text(json.dumps(body, indent=2))
    md = table(results)
    print(md)
    update_readme("latency", f"Measured {body['when']} on {body['machine']} (`make bench`):\n\n{md}")


if __name__ == "__main__":
    main()
