"""How soon the caller may speak: every greeting's length in the project's voices, and, over the real
WebSocket call path, the time from call start until the bot listens for the answer.

    python -m bench.greeting [--calls 3] [--no-server] [--wait-all]

Offline: each opening phrase (triage `greeting`, the widget's `greeting_page_consent`, the follow-up
greetings with the language pack's default hospital and a sample name, and the follow-up consent) is split
and synthesised clause by clause as a call speaks it (voice.tts.spoken): seconds of audio and where the
last word ends. Online: a triage and a follow-up call per language on the real server (warm start
awaited, or only its first clauses: the greetings) from the start message to the first greeting audio, to
the last word of the question heard, and to the state `listening`.
Results in bench/results/greeting.json and the README (`<!-- bench:greeting -->`).
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
from bench.latency import wait_warm
from bench.report import update_readme
from voice.audio import Pcm, speech_end_s
from voice.caller import CallerSession, fetch_call_token
from voice.ports import Synthesizer
from voice.tts.spoken import Spoken, spoken

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_NAME = {"en": "Mary Jones", "zh": "王丽"}


def opening_phrases(lang: str) -> dict[str, str]:
    """What the bot says before the caller's first answer, per opening (blanks filled as a call fills them)."""
    from dialogue.knowledge import knowledge
    from voice.languages import languages

    kn = knowledge()
    texts = kn.phrases[lang].texts
    out = {"triage greeting": texts["greeting"],
           "widget greeting (consent on the page)": texts["greeting_page_consent"]}
    follow = kn.followup_text.get(lang)
    if follow is not None:
        hospital = languages[lang].default_hospital
        out["follow-up greeting"] = follow.texts["greeting"].format(hospital=hospital, name=SAMPLE_NAME[lang])
        out["follow-up greeting, no name"] = follow.texts["greeting_no_name"].format(hospital=hospital)
        out["follow-up consent (after identity)"] = follow.texts["consent"]
    return out


def voices() -> dict[str, Synthesizer]:
    from concurrent.futures import ThreadPoolExecutor

    from settings import Settings
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    settings, ex = Settings(), ThreadPoolExecutor(1)
    return {"en": PiperSynthesizer.from_settings(settings, ex), "zh": MandarinSynthesizer.from_settings(settings, ex)}


async def measure_offline() -> list[dict[str, Any]]:
    rows = []
    for lang, voice in voices().items():
        for name, text in opening_phrases(lang).items():
            s: Spoken = await spoken(voice, text, lang)
            rows.append({"language": lang, "engine": type(voice).__name__, "opening": name, "text": text,
                         "seconds": s.seconds, "last_word_end_s": s.speech_end_s,
                         "clauses": [{"text": c, "seconds": d} for c, d in s.clauses]})
    return rows


async def one_call(server: RunningServer, lang: str, mode: str) -> dict[str, float | None]:
    """Start → first greeting audio → last word heard → `listening`, on the caller's clock (seconds)."""
    t0 = time.monotonic()
    async with CallerSession(server.ws_url, lang, mode=mode) as line:
        await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=30)
        report = line.report
        started = next((e["_at"] for e in report.events if e.get("type") == "started"), None)
        first = line.bot_audio_times[0] if line.bot_audio_times else None
        listening = next((e["_at"] for e in report.events if e.get("type") == "state"
                          and e.get("state") == "listening" and first is not None and e["_at"] > first), None)
        audio = Pcm.concat(report.bot_audio, report.output_rate)
        await line.hang_up()
    # The audio arrives paced in real time, so the last word is heard at first audio + its offset.
    heard = None if first is None else first + speech_end_s(audio)

    def since(t: float | None) -> float | None:
        return None if t is None else round(t - t0, 3)

    return {"started_s": since(started), "first_audio_s": since(first), "last_word_heard_s": since(heard),
            "listening_s": since(listening), "audio_s": round(audio.duration, 3)}


async def measure_online(server: RunningServer, calls: int, modes: tuple[str, ...]) -> list[dict[str, Any]]:
    await fetch_call_token(server.ws_url, "en")  # the caller's own first HTTP client (~0.5 s), not the server's
    rows = []
    for lang in ("en", "zh"):
        for mode in modes:
            runs = [await one_call(server, lang, mode) for _ in range(calls)]
            row: dict[str, Any] = {"language": lang, "mode": mode, "calls": calls}
            for key in runs[0]:
                values = [r[key] for r in runs if r[key] is not None]
                row[key] = {"median": round(statistics.median(values), 3) if values else None,
                            "max": round(max(values), 3) if values else None}
            rows.append(row)
    return rows


def wait_rendered(server: RunningServer, clauses: int, timeout_s: float = 600) -> dict[str, Any]:
    """Until the warm-up has rendered its first `clauses` (both greetings and the common texts come first)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        warm = httpx.get(f"{server.base_url}/healthz", timeout=5).json().get("warm") or {"done": True}
        if warm.get("done") or warm.get("rendered", 0) >= clauses or time.monotonic() > deadline:
            return warm
        time.sleep(0.5)


def table(offline: list[dict[str, Any]], online: list[dict[str, Any]]) -> str:
    lines = ["| language | opening | audio | last word ends | text |", "|---|---|---|---|---|"]
    for r in offline:
        lines.append(f"| {r['language']} | {r['opening']} | {r['seconds']:.2f} s | {r['last_word_end_s']:.2f} s "
                     f"| {r['text']} |")
    if online:
        lines += ["", "Over the WebSocket path (median / max of the calls; seconds from the start message):", "",
                  "| language | call | first greeting audio | last word heard | bot listening |",
                  "|---|---|---|---|---|"]
        for r in online:
            def cell(key: str, r: dict[str, Any] = r) -> str:
                return f"{r[key]['median']} / {r[key]['max']} s"
            lines.append(f"| {r['language']} | {r['mode']} | {cell('first_audio_s')} | {cell('last_word_heard_s')} "
                         f"| {cell('listening_s')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3, help="calls per language and mode over the server")
    parser.add_argument("--no-server", action="store_true", help="only the offline synthesis figures")
    parser.add_argument("--wait-all", action="store_true",
                        help="wait for the whole warm-up and measure follow-up calls too (default: triage calls "
                             "once the greetings are rendered, the warm-up going on meanwhile)")
    args = parser.parse_args()
    offline = asyncio.run(measure_offline())
    online: list[dict[str, Any]] = []
    load = os.getloadavg()
    if not args.no_server:
        with tempfile.TemporaryDirectory() as tmp:
            server = start_server(Path(tmp) / "server")
            try:
                print("warm start:", wait_warm(server) if args.wait_all else wait_rendered(server, 60), flush=True)
                load = os.getloadavg()
                modes = ("triage", "followup") if args.wait_all else ("triage",)
                online = asyncio.run(measure_online(server, args.calls, modes))
            finally:
                stop_server(server.process)
    body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average": [round(x, 1) for x in load], "offline": offline, "online": online}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "greeting.json").write_text(json.dumps(body, indent=2, ensure_ascii=False))
    md = table(offline, online)
    print(md)
    update_readme("greeting", f"Measured {body['when']} on {body['machine']}, load average {body['load_average'][0]} "
                              f"(`python -m bench.greeting`):\n\n{md}")


if __name__ == "__main__":
    main()
