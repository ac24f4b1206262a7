"""Voice-to-voice latency over the phone paths, measured at the simulated caller: Twilio-style
Media Streams (a WebSocket caller speaking the carrier's protocol) and SIP/RTP (CareCall's own SIP
endpoint used as the calling phone), on the real server with embedded models. Then more and more
calls at once until p95 passes 1.5 s. The phone paths alone, without the models: bench.phone_transport.

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


SpeechEnds = Callable[[Pcm], list[float]]  # where speech ends in a clip (s): the caller's clock starts there


async def converse(say: Callable[[np.ndarray], Awaitable[float]], ear: Ear, utterances: list[Pcm],
                   ends_of: SpeechEnds = speech_ends) -> list[float]:
    """Greeting, then each utterance once the bot is quiet; returns client-side latencies (ms)."""
    out: list[float] = []
    await ear.quiet()
    for utt in utterances:
        ends = ends_of(utt)
        end_in_clip = ends[-1] if ends else utt.duration
        started = await say(resample(utt, 8000).samples)
        speech_end = started + end_in_clip
        first = await ear.first_after(speech_end)
        if first is not None:
            out.append((first - speech_end) * 1000)
        await ear.quiet()
    return out


# --- Media Streams caller --------------------------------------------------------------------
async def media_streams_call(url: str, language: str, utterances: list[Pcm],
                             ends_of: SpeechEnds = speech_ends) -> list[float]:
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
            return await converse(say, ear, utterances, ends_of)
        finally:
            await send({"event": "stop", "stop": {"callSid": "x"}})
            for t in tasks:
                t.cancel()


# --- SIP caller (CareCall's own endpoint as the phone) ---------------------------------------
class AlwaysFree:
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


class _Phone(AlwaysFree):
    """A CallHub-shaped stand-in that runs the caller's script over the RTP transport it is given."""

    def __init__(self, utterances: list[Pcm], ends_of: SpeechEnds) -> None:
        self.utterances = utterances
        self.ends_of = ends_of
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
            self.latencies = await converse(say, ear, self.utterances, self.ends_of)
        finally:
            listener.cancel()
        return {}


async def sip_call(sip_port: int, language: str, utterances: list[Pcm],
                   ends_of: SpeechEnds = speech_ends) -> list[float]:
    phone = _Phone(utterances, ends_of)
    lo = random.randrange(50000, 59000, 100)
    ep = SipEndpoint(SipConfig(port=0, rtp_ports=(lo, lo + 99), input_rate=8000), get_hub=lambda: phone)
    await ep.start()
    try:
        await ep.dial(f"sip:{language}@127.0.0.1:{sip_port}", language=language, mode="triage")
    finally:
        await ep.stop()
    return phone.latencies


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


def run_rows(runs: list[dict[str, Any]], metric: str, heading: str) -> list[str]:
    """One table row per run: path, calls at once, turns, `metric`'s p50 and p95, turns without reply."""
    rows = [f"| path | calls at once | turns | {heading} p50 | p95 | turns without reply |",
            "|---|---|---|---|---|---|"]
    for r in runs:
        c = r[metric]
        rows.append(f"| {r['path']} | {r['concurrent']} | {c['n']} | {c['p50']} ms | {c['p95']} ms "
                    f"| {r['turns_without_reply']} |")
    return rows


def table(runs: list[dict[str, Any]]) -> str:
    rows = run_rows(runs, "client_voice_to_voice_ms", "voice-to-voice")
    for path in ("media-streams", "sip"):
        ok = [r["concurrent"] for r in runs if r["path"] == path and r["client_voice_to_voice_ms"]["p95"] is not None
              and r["client_voice_to_voice_ms"]["p95"] <= BUDGET_MS and not r["failed_calls"]]
        rows.append(f"\nMost {path} calls at once with p95 ≤ {BUDGET_MS} ms: **{max(ok) if ok else 0}**")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()
    audio = synthesise_scripts()
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
