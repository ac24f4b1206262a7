"""Voice-to-voice latency over the WebSocket call path, measured on the caller's clock.

Starts the real server on embedded models, plays scripted multi-turn calls in real time (each
answer after the bot's reply, on a live line), and reports per turn: client-side latency (end of
caller speech in the file → first bot audio byte), the server's breakdown, and memory per call.

    python -m bench.latency [--calls 4] [--concurrent 1 2 4 8] [--pipecat PIPECAT_WORK]

English and Mandarin are reported apart (each round alternates them over the calls at once), with
p50 / p95 / max on the caller's clock, the server's breakdown, split turns (one scripted answer heard as
two caller turns) and cut-offs (a caller turn that lost the answer's last word). The server's warm start
is awaited first (`/healthz`), so the figures are the steady state. With `--pipecat`, the Pipecat anchor
(../shared/anchors, same models, its own espeak audio) runs in the same session as the reference and the
ratio CareCall / Pipecat is printed. The machine is shared: figures are noisy.
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

from bench.harness import RunningServer, start_server, stop_server
from bench.report import percentile, update_readme
from voice.audio import Pcm
from voice.caller import scripted_call
from voice.languages import languages

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
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {"n": len(values), "p50": round(statistics.median(values)), "p95": round(percentile(values, 95)),
            "max": round(max(values))}


def _last_word(text: str, lang: str) -> str:
    """The last word (en), or the last two hanzi where words are not spaced (zh)."""
    if not languages[lang].spaced:
        core = [c for c in text if "\u4e00" <= c <= "\u9fff"]
        return "".join(core[-2:])
    words = [w.strip(".,!?'").lower() for w in text.split()]
    return words[-1] if words else ""


def turn_faults(lang: str, report_turns: list[dict[str, Any]]) -> tuple[int, int]:
    """(split turns, cut-offs) of one scripted call: callers' turns beyond the answers sent, and turns
    whose transcript lacks the scripted answer's last word (heard turns are matched in order)."""
    heard = [t["text"] for t in report_turns if t["speaker"] == "caller"]
    script = SCRIPTS[lang][: len(heard)]
    splits = max(0, len(heard) - len(SCRIPTS[lang]))
    cutoffs = 0
    for said, text in zip(script, heard, strict=False):
        last = _last_word(said, lang)
        if not languages[lang].spaced:
            cutoffs += not any(c in text[-4:] for c in last)
        else:
            cutoffs += last not in text.lower()
    return splits, cutoffs


def wait_warm(server: RunningServer, timeout_s: float = 900) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    warm: dict[str, Any] = {}
    while time.monotonic() < deadline:
        warm = httpx.get(f"{server.base_url}/healthz", timeout=5).json().get("warm") or {"done": True}
        if warm.get("done"):
            break
        time.sleep(1)
    return warm


async def run_calls(server: RunningServer, audio: dict[str, list[Pcm]], calls: int, concurrent: int) -> dict:
    client: list[float] = []
    turns: list[dict[str, Any]] = []
    splits = cutoffs = 0
    by_lang: dict[str, list[float]] = {"en": [], "zh": []}
    langs = ["en", "zh"]
    rss_peak = 0.0
    rss_idle = server.rss_mb()
    load_before = os.getloadavg()[0]  # the machine is shared: the figures only mean something beside this

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
            s, c = turn_faults(lang, report.turns)
            splits, cutoffs = splits + s, cutoffs + c
    bd = breakdown(turns)
    return {
        "calls": calls * concurrent,
        "concurrent": concurrent,
        "client_voice_to_voice_ms": summary(client),
        "by_language_ms": {k: summary(v) for k, v in by_lang.items()},
        "server_breakdown_ms": {k: summary(v) for k, v in bd.items()},
        "split_turns": splits,
        "cut_offs": cutoffs,
        "rss_idle_mb": round(rss_idle),
        "rss_peak_mb": round(rss_peak),
        "memory_per_call_mb": round(max(0.0, rss_peak - rss_idle) / concurrent, 1),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],  # before, after
    }


def table(results: list[dict]) -> str:
    rows = [
        "| calls at once | turns | en p50 / p95 / max | zh p50 / p95 / max | endpoint wait p50 | ASR p50 "
        "| reply text p50 | TTS first audio p50 | split turns | cut-offs | memory per call | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c, b, bl = r["client_voice_to_voice_ms"], r["server_breakdown_ms"], r["by_language_ms"]
        en, zh = bl["en"], bl["zh"]
        rows.append(
            f"| {r['concurrent']} | {c['n']} | {en['p50']} / {en['p95']} / {en['max']} ms "
            f"| {zh['p50']} / {zh['p95']} / {zh['max']} ms "
            f"| {b['endpoint_wait_ms']['p50']} ms | {b['asr_ms']['p50']} ms | {b['llm_first_token_ms']['p50']} ms "
            f"| {b['tts_first_audio_ms']['p50']} ms | {r['split_turns']} | {r['cut_offs']} "
            f"| {r['memory_per_call_mb']} MB | {' → '.join(str(x) for x in r.get('load_average_1min', []))} |"
        )
    return "\n".join(rows)


def run_pipecat(work: Path, reps: int) -> dict[str, Any] | None:
    """The Pipecat anchor's defaults in this session (its own run_bench.sh); its client.json latencies."""
    import subprocess

    anchors = Path(__file__).resolve().parents[2] / "shared" / "anchors"
    if not anchors.exists():
        anchors = Path(__file__).resolve().parents[1].parent / "shared" / "anchors"
    script = anchors / "pipecat" / "run_bench.sh"
    if not script.exists():
        print(f"pipecat anchor not found at {anchors}")
        return None
    label = f"voice-bench-{int(time.time())}"
    from bench.harness import free_port

    env = {**os.environ, "LLM_PORT": str(free_port()), "BOT_PORT": str(free_port())}
    subprocess.run(["bash", str(script), label, str(work), str(reps), "--", "--vad-stop-secs", "0.2", "--turn",
                    "smart", "--beam-size", "1"], env=env, check=True)
    data = json.loads((work / "runs" / label / "client.json").read_text())
    values = [1000 * t["latency_secs"] for t in data.get("turns", [])
              if isinstance(t.get("latency_secs"), int | float) and not t.get("timed_out")]
    return summary(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=4, help="rounds of calls (each round alternates en/zh)")
    parser.add_argument("--concurrent", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--pipecat", type=Path, help="PIPECAT_WORK from ../shared/anchors/pipecat/setup.sh")
    parser.add_argument("--pipecat-reps", type=int, default=3)
    args = parser.parse_args()
    audio = synthesise_scripts()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server")
        try:
            print("warm start:", wait_warm(server), flush=True)
            for n in args.concurrent:
                rounds = args.calls if n == 1 else max(1, args.calls // 2)
                results.append(asyncio.run(run_calls(server, audio, rounds, n)))
        finally:
            stop_server(server.process)
    pipecat = run_pipecat(args.pipecat, args.pipecat_reps) if args.pipecat else None
    RESULTS.mkdir(exist_ok=True)
    body: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, "
                            f"{os.cpu_count()} cores", "runs": results}
    if pipecat and results:
        one = results[0]["client_voice_to_voice_ms"]
        body["pipecat_ms"] = pipecat
        body["ratio_to_pipecat"] = {k: round(one[k] / pipecat[k], 2) for k in ("p50", "p95")
                                    if one.get(k) and pipecat.get(k)}
        print("pipecat:", pipecat, "ratio CareCall (1 call) / Pipecat:", body["ratio_to_pipecat"])
    (RESULTS / "latency.json").write_text(json.dumps(body, indent=2))
    md = table(results)
    if "ratio_to_pipecat" in body:
        pc, ratio = body["pipecat_ms"], body["ratio_to_pipecat"]
        md += (f"\n\nThe Pipecat anchor (../shared/anchors/pipecat, same models and machine, run right after): "
               f"p50 {pc['p50']} ms, p95 {pc['p95']} ms over {pc['n']} turns; CareCall (1 call) / Pipecat: "
               f"p50 {ratio.get('p50')}, p95 {ratio.get('p95')}.")
    print(md)
    update_readme("latency", f"Measured {body['when']} on {body['machine']} (`make bench`):\n\n{md}")


if __name__ == "__main__":
    main()
