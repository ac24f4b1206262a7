"""Voice-to-voice latency over the phone paths, measured at the simulated caller: Twilio-style
Media Streams (a WebSocket caller speaking the carrier's protocol) and SIP/RTP (CareCall's own SIP
endpoint used as the calling phone), on the real server with embedded models. Then more and more
calls at once until p95 passes 1.5 s.

    python -m bench.phone_latency [--turns 3] [--max-concurrent 4]

Latency per turn = end of the caller's speech (where the VAD puts it in the clip) → first bot
audio loud enough to hear arriving at the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import random
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from bench.harness import RunningServer, start_server, stop_server
from bench.latency import synthesise_scripts
from bench.report import percentile, update_readme
from telephony.sip.endpoint import SipConfig, SipEndpoint
from telephony.stream_auth import fetch_stream_parameters
from voice import g711
from voice.audio import Pcm
from voice.caller import speech_ends
from voice.events import CallerAudio, CallerHangup
from voice.hub import Readiness, Ticket
from voice.resample import resample

RESULTS = Path(__file__).resolve().parent / "results"
LOUD_DBFS = -40.0
BUDGET_MS = 1500


def loud(samples: np.ndarray) -> bool:
    x = samples.astype(np.float64) / 32768
    return len(x) > 0 and 20 * np.log10(max(float(np.sqrt((x**2).mean())), 1e-6)) > LOUD_DBFS


class Ear:
    """What the caller hears: arrival times of loud bot audio."""

    def __init__(self) -> None:
        self.loud_at: list[float] = []

    def hear(self, samples: np.ndarray) -> None:
        if loud(samples):
            self.loud_at.append(time.monotonic())

    async def first_after(self, t: float, timeout: float = 20.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at in self.loud_at:
                if at > t:
                    return at
            await asyncio.sleep(0.005)
        return None

    async def quiet(self, quiet_s: float = 1.2, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.loud_at[-1] if self.loud_at else 0.0
            if self.loud_at and time.monotonic() - last > quiet_s:
                return
            await asyncio.sleep(0.05)


def loud_end(utt: Pcm) -> float:
    """Where the last loud 20 ms of the clip ends (the instant responder's notion of speech end)."""
    x = resample(utt, 8000).samples
    ends = [(i + 160) / 8000 for i in range(0, len(x) - 159, 160) if loud(x[i:i + 160])]
    return ends[-1] if ends else utt.duration


ENERGY_ENDS = False  # transport-only runs measure from the responder's own end-of-speech rule


async def converse(say: Callable[[np.ndarray], Awaitable[float]], ear: Ear, utterances: list[Pcm]) -> list[float]:
    """Greeting, then each utterance once the bot is quiet; returns client-side latencies (ms)."""
    out: list[float] = []
    await ear.quiet()
    for utt in utterances:
        ends = [loud_end(utt)] if ENERGY_ENDS else speech_ends(utt)
        end_in_clip = ends[-1] if ends else utt.duration
        started = await say(resample(utt, 8000).samples)
        speech_end = started + end_in_clip
        first = await ear.first_after(speech_end)
        if first is not None:
            out.append((first - speech_end) * 1000)
        await ear.quiet()
    return out


# --- Media Streams caller --------------------------------------------------------------------
async def media_streams_call(url: str, language: str, utterances: list[Pcm]) -> list[float]:
    sid = "MZ" + uuid.uuid4().hex
    ear = Ear()
    outgoing: asyncio.Queue[np.ndarray] = asyncio.Queue()
    seq = 0
    custom = await fetch_stream_parameters(url, {"language": language})  # the TwiML's, signed token included
    async with websockets.connect(url, max_size=2**20) as ws:

        async def send(msg: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            await ws.send(json.dumps({"sequenceNumber": str(seq), "streamSid": sid, **msg}))

        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await send({"event": "start", "start": {"streamSid": sid, "callSid": "CA" + uuid.uuid4().hex,
                                                "accountSid": "AC" + "0" * 32, "tracks": ["inbound"],
                                                "customParameters": custom,
                                                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                                                "channels": 1}}})
        started_at: dict[int, float] = {}

        async def line() -> None:  # 20 ms frames for the whole call: speech when queued, else silence
            pending = np.zeros(0, np.int16)
            t0 = time.monotonic()
            n = 0
            while True:
                if len(pending) < 160 and not outgoing.empty():
                    chunk = outgoing.get_nowait()
                    started_at[id(chunk)] = time.monotonic()
                    pending = np.concatenate([pending, chunk])
                if len(pending) >= 160:
                    frame, pending = pending[:160], pending[160:]
                else:
                    frame = np.zeros(160, np.int16)
                await send({"event": "media", "media": {"track": "inbound", "payload":
                                                        base64.b64encode(g711.ulaw_encode(frame)).decode()}})
                n += 1
                await asyncio.sleep(max(0.0, t0 + n * 0.02 - time.monotonic()))

        async def listen() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("event") == "media":
                    ear.hear(g711.ulaw_decode(base64.b64decode(msg["media"]["payload"])))
                elif msg.get("event") == "mark":  # played at once: this caller has no buffer
                    await send({"event": "mark", "mark": msg["mark"]})

        async def say(samples: np.ndarray) -> float:
            await outgoing.put(samples)
            while id(samples) not in started_at:
                await asyncio.sleep(0.002)
            await asyncio.sleep(len(samples) / 8000)
            return started_at[id(samples)]

        tasks = [asyncio.create_task(line()), asyncio.create_task(listen())]
        try:
            return await converse(say, ear, utterances)
        finally:
            await send({"event": "stop", "stop": {"callSid": "x"}})
            for t in tasks:
                t.cancel()


# --- SIP caller (CareCall's own endpoint as the phone) ---------------------------------------
class _AlwaysFree:
    """The admission part of the hub's interface for stand-ins that take every call: a line is
    always free (`reserve`), `run(ticket, info, transport)` as the real hub's."""

    def reserve(self, channel: str = "") -> Ticket:
        return Ticket(0, channel, float("inf"), lambda ticket: None)

    def readiness(self) -> Readiness:
        return Readiness(True, "ok", 0, 1_000, False)

    def has_capacity(self) -> bool:
        return True

    async def run(self, ticket: Any, info: Any, transport: Any = None) -> dict[str, Any]:
        if transport is None:  # the older form run(info, transport)
            info, transport = ticket, info
        return await self.run_call(info, transport)

    async def run_call(self, info: Any, transport: Any) -> dict[str, Any]:
        raise NotImplementedError


class _Phone(_AlwaysFree):
    """A CallHub-shaped stand-in that runs the caller's script over the RTP transport it is given."""

    def __init__(self, utterances: list[Pcm]) -> None:
        self.utterances = utterances
        self.latencies: list[float] = []

    def new_call_id(self) -> str:
        return uuid.uuid4().hex

    async def run_call(self, info: Any, transport: Any) -> dict[str, Any]:
        ear = Ear()

        async def listen() -> None:
            while True:
                ev = await transport.receive()
                if isinstance(ev, CallerAudio):
                    ear.hear(ev.audio.samples)
                elif isinstance(ev, CallerHangup):
                    return

        async def say(samples: np.ndarray) -> float:
            t = time.monotonic()
            await transport.send_audio(Pcm(samples, 8000))
            await transport.wait_played()
            return t

        listener = asyncio.create_task(listen())
        try:
            self.latencies = await converse(say, ear, self.utterances)
        finally:
            listener.cancel()
        return {}


async def sip_call(sip_port: int, language: str, utterances: list[Pcm]) -> list[float]:
    phone = _Phone(utterances)
    lo = random.randrange(50000, 59000, 100)
    ep = SipEndpoint(SipConfig(port=0, rtp_ports=(lo, lo + 99), input_rate=8000), get_hub=lambda: phone)
    await ep.start()
    try:
        await ep.dial(f"sip:{language}@127.0.0.1:{sip_port}", language=language, mode="triage")
    finally:
        await ep.stop()
    return phone.latencies


# --- transport only: an instant responder instead of the models ----------------------------
class ResponderHub(_AlwaysFree):
    """Replies with 1 s of tone as soon as the caller has been quiet for `QUIET_S` after speaking:
    what is left of the caller's latency is the phone path itself (plus QUIET_S)."""

    QUIET_S = 0.3

    def __init__(self) -> None:
        self.active = 0

    def new_call_id(self) -> str:
        return uuid.uuid4().hex

    async def run_call(self, info: Any, transport: Any) -> dict[str, Any]:
        self.active += 1
        rate = transport.input_rate
        beep = Pcm((np.sin(2 * np.pi * 440 * np.arange(8000) / 8000) * 8000).astype(np.int16), 8000)
        transport.mark_turn()
        await transport.send_audio(Pcm(beep.samples[:4000], 8000))  # a short greeting
        heard_speech, quiet = False, 0.0
        try:
            while True:
                ev = await transport.receive()
                if isinstance(ev, CallerHangup):
                    return {}
                if not isinstance(ev, CallerAudio):
                    continue
                if loud(ev.audio.samples):
                    heard_speech, quiet = True, 0.0
                elif heard_speech:
                    quiet += len(ev.audio.samples) / rate
                    if quiet >= self.QUIET_S:
                        heard_speech = False
                        transport.mark_turn()
                        await transport.send_audio(beep)
        finally:
            self.active -= 1


def serve_responder(http_port: int, sip_port: int) -> None:
    """The responder behind the real phone transports, as its own process (`--serve-responder`)."""
    import uvicorn
    from fastapi import FastAPI

    from settings import Settings
    from telephony.twilio_webhooks import build_router

    hub = ResponderHub()
    app = FastAPI()
    app.include_router(build_router(Settings(), get_hub=lambda _app: hub))
    lo = random.randrange(40000, 49000, 100)
    endpoint = SipEndpoint(SipConfig(port=sip_port, rtp_ports=(lo, lo + 999)), get_hub=lambda: hub)

    @app.on_event("startup")
    async def _start() -> None:
        await endpoint.start()

    uvicorn.run(app, host="127.0.0.1", port=http_port, log_level="warning")


# --- the sweep -------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {"n": len(values), "p50": round(statistics.median(values)), "p95": round(percentile(values, 95))}


async def sweep(server: RunningServer, sip_port: int, audio: dict[str, list[Pcm]], turns: int,
                max_concurrent: int) -> list[dict[str, Any]]:
    ws_url = server.base_url.replace("http", "ws") + "/telephony/twilio/stream"
    runs = []
    for path in ("media-streams", "sip"):
        for n in range(1, max_concurrent + 1):
            langs = ["en" if i % 2 == 0 else "zh" for i in range(n)]
            if path == "media-streams":
                calls = [media_streams_call(ws_url, lang, audio[lang][:turns]) for lang in langs]
            else:
                calls = [sip_call(sip_port, lang, audio[lang][:turns]) for lang in langs]
            results = await asyncio.gather(*calls, return_exceptions=True)
            lat = [x for r in results if isinstance(r, list) for x in r]
            failed = sum(1 for r in results if not isinstance(r, list))
            missing = n * turns - len(lat)
            run = {"path": path, "concurrent": n, "client_voice_to_voice_ms": summary(lat), "failed_calls": failed,
                   "turns_without_reply": missing}
            runs.append(run)
            print(json.dumps(run), flush=True)
            p95 = run["client_voice_to_voice_ms"]["p95"]
            if p95 is None or p95 > BUDGET_MS or failed:
                break
    return runs


def server_side(server: RunningServer) -> dict[str, Any]:
    """The server's own per-turn voice-to-voice (end of speech as its VAD saw it → first audio sent)
    and its breakdown, per channel, from the call records: separates the line from the models."""
    import sqlite3

    con = sqlite3.connect(server.data_dir / "carecall.db")
    try:
        out: dict[str, Any] = {}
        for channel in ("media-stream", "sip"):
            rows = con.execute(
                "SELECT t.voice_to_voice_ms, t.endpoint_wait_ms, t.asr_ms, t.llm_first_token_ms, t.tts_first_audio_ms "
                "FROM turns t JOIN calls c ON c.id = t.call_id WHERE c.channel = ? AND t.voice_to_voice_ms IS NOT NULL",
                (channel,)).fetchall()
            names = ("voice_to_voice_ms", "endpoint_wait_ms", "asr_ms", "llm_first_token_ms", "tts_first_audio_ms")
            out[channel] = {n: summary([r[i] for r in rows if r[i] is not None]) for i, n in enumerate(names)}
        return out
    finally:
        con.close()


def table(runs: list[dict[str, Any]]) -> str:
    rows = ["| path | calls at once | turns | voice-to-voice p50 | p95 | turns without reply |",
            "|---|---|---|---|---|---|"]
    for r in runs:
        c = r["client_voice_to_voice_ms"]
        rows.append(f"| {r['path']} | {r['concurrent']} | {c['n']} | {c['p50']} ms | {c['p95']} ms "
                    f"| {r['turns_without_reply']} |")
    for path in ("media-streams", "sip"):
        ok = [r["concurrent"] for r in runs if r["path"] == path and r["client_voice_to_voice_ms"]["p95"] is not None
              and r["client_voice_to_voice_ms"]["p95"] <= BUDGET_MS and not r["failed_calls"]]
        rows.append(f"\nMost {path} calls at once with p95 ≤ {BUDGET_MS} ms: **{max(ok) if ok else 0}**")
    return "\n".join(rows)


def transport_only(audio: dict[str, list[Pcm]], turns: int, steps: list[int]) -> list[dict[str, Any]]:
    global ENERGY_ENDS
    import subprocess

    ENERGY_ENDS = True
    import sys

    from bench.harness import free_port

    http_port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sip_port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bench.phone_latency", "--serve-responder", str(http_port),
                             str(sip_port)], start_new_session=True)
    try:
        time.sleep(4)
        fake = RunningServer(f"http://127.0.0.1:{http_port}", "", Path("."), proc, {}, Path("/dev/null"))

        async def go() -> list[dict[str, Any]]:
            runs = []
            for path in ("media-streams", "sip"):
                for n in steps:
                    ws_url = fake.base_url.replace("http", "ws") + "/telephony/twilio/stream"
                    calls = [media_streams_call(ws_url, "en", audio["en"][:turns]) if path == "media-streams"
                             else sip_call(sip_port, "en", audio["en"][:turns]) for _ in range(n)]
                    results = await asyncio.gather(*calls, return_exceptions=True)
                    lat = [x - ResponderHub.QUIET_S * 1000 for r in results if isinstance(r, list) for x in r]
                    run = {"path": path, "concurrent": n, "line_overhead_ms": summary(lat),
                           "failed_calls": sum(1 for r in results if not isinstance(r, list)),
                           "turns_without_reply": n * turns - len(lat)}
                    print(json.dumps(run), flush=True)
                    runs.append(run)
                    p95 = run["line_overhead_ms"]["p95"]
                    if p95 is None or p95 > BUDGET_MS or run["failed_calls"]:
                        break
            return runs

        return asyncio.run(go())
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-concurrent", type=int, default=4)
    parser.add_argument("--transport-only", type=int, nargs="*", metavar="N",
                        help="instant responder instead of the models; calls at once to try (default 1 10 25 50)")
    parser.add_argument("--serve-responder", type=int, nargs=2, metavar=("HTTP_PORT", "SIP_PORT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_responder:
        serve_responder(*args.serve_responder)
        return
    audio = synthesise_scripts()
    if args.transport_only is not None:
        steps = args.transport_only or [1, 10, 25, 50]
        runs = transport_only(audio, args.turns, steps)
        RESULTS.mkdir(exist_ok=True)
        body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "responder_quiet_s": ResponderHub.QUIET_S, "runs": runs}
        (RESULTS / "phone_transport.json").write_text(json.dumps(body, indent=2))
        rows = ["| path | calls at once | turns | line overhead p50 | p95 | turns without reply |",
                "|---|---|---|---|---|---|"]
        for r in runs:
            c = r["line_overhead_ms"]
            rows.append(f"| {r['path']} | {r['concurrent']} | {c['n']} | {c['p50']} ms | {c['p95']} ms "
                        f"| {r['turns_without_reply']} |")
        md = "\n".join(rows)
        print(md)
        update_readme("phone-transport", f"Phone paths alone (an instant responder in place of the models; "
                      f"caller-side latency less its {ResponderHub.QUIET_S * 1000:.0f} ms wait), {body['when']} on "
                      f"{body['machine']} (`python -m bench.phone_latency --transport-only`):\n\n{md}")
        return
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        sip_port = s.getsockname()[1]
    lo = random.randrange(40000, 49000, 100)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "server", {
            "CARECALL_SIP_ENABLED": "true", "CARECALL_SIP_PORT": str(sip_port),
            "CARECALL_SIP_RTP_PORT_MIN": str(lo), "CARECALL_SIP_RTP_PORT_MAX": str(lo + 99)})
        try:
            runs = asyncio.run(sweep(server, sip_port, audio, args.turns, args.max_concurrent))
            server_ms = server_side(server)
        finally:
            stop_server(server.process)
    RESULTS.mkdir(exist_ok=True)
    body = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "budget_ms": BUDGET_MS, "runs": runs, "server_side_ms": server_ms}
    (RESULTS / "phone_latency.json").write_text(json.dumps(body, indent=2))
    md = table(runs)
    for channel, m in server_ms.items():
        md += (f"\n\nServer side, {channel} (p50): voice-to-voice {m['voice_to_voice_ms']['p50']} ms = endpoint wait "
               f"{m['endpoint_wait_ms']['p50']} + ASR {m['asr_ms']['p50']} + reply text "
               f"{m['llm_first_token_ms']['p50']} + TTS first audio {m['tts_first_audio_ms']['p50']} ms")
    print(md)
    load = os.getloadavg()[0]
    update_readme("phone-latency", f"Phone paths with the models, measured {body['when']} on {body['machine']} "
                  f"(load average {load:.1f} from other work on the machine; `python -m bench.phone_latency`):"
                  f"\n\n{md}")


if __name__ == "__main__":
    main()
