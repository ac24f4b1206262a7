"""A scripted caller on the WebSocket call protocol: plays a WAV in real time as a caller would,
records what comes back and measures latency on the caller's own clock. Used by `carecall call`,
the latency benchmark and the end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voice.audio import Pcm
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded
from voice.resample import resample

FRAME_S = 0.02
SEND_RATES = (8000, 16000, 24000, 48000)


def read_wav(path: Path) -> Pcm:
    """A WAV file as mono PCM16 (channels averaged); its own rate unless the protocol can't take it."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV files are supported")
        rate, channels = w.getframerate(), w.getnchannels()
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    pcm = Pcm(samples.astype(np.int16), rate)
    return pcm if rate in SEND_RATES else resample(pcm, 16000)


def write_wav(path: Path, audio: Pcm) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(audio.to_bytes())


def speech_ends(audio: Pcm) -> list[float]:
    """Where caller speech ends in the file (seconds), by the same VAD the server uses."""
    pcm16 = resample(audio, 16000)
    ep = Endpointer(EndpointerConfig(silence_ms=400))
    ends = [e.speech_end_s for e in ep.feed(pcm16) if isinstance(e, SpeechEnded)]
    ends += [e.speech_end_s for e in ep.feed(Pcm.silence(1.0, 16000)) if isinstance(e, SpeechEnded)]
    return ends


@dataclass
class CallReport:
    language: str
    call_id: str = ""
    turns: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # client-side voice-to-voice per reply
    bot_audio: list[Pcm] = field(default_factory=list)
    output_rate: int = 16000
    result: dict[str, Any] = field(default_factory=dict)
    red_flags: list[str] = field(default_factory=list)
    end_reason: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_id": self.call_id,
            "language": self.language,
            "turns": self.turns,
            "latencies_ms": self.latencies_ms,
            "end_reason": self.end_reason,
        }
        for key in ("disposition", "department"):
            if key in self.result:
                out[key] = self.result[key]
        flags = self.result.get("red_flags", self.red_flags)
        out["red_flags"] = flags
        out["result"] = self.result
        return out


class ScriptedCaller:
    """One call: wait for the greeting, speak the file in real time, listen to the reply."""

    def __init__(self, url: str, language: str, *, mode: str = "triage", token: str | None = None,
                 params: dict[str, Any] | None = None, reply_timeout_s: float = 30.0,
                 wait_for_greeting: bool = True) -> None:
        self.url = url
        self.language = language
        self.mode = mode
        self.token = token
        self.params = params or {}
        self.reply_timeout_s = reply_timeout_s
        self.wait_for_greeting = wait_for_greeting
        self._state = "connecting"
        self._last_bot_audio = 0.0
        self._bot_audio_times: list[float] = []
        self._ended = asyncio.Event()
        self._rate = 16000

    async def run(self, audio: Pcm) -> CallReport:
        report = CallReport(language=self.language)
        self._rate = audio.sample_rate
        ends_in_file = speech_ends(audio)
        async with websockets.connect(self.url, max_size=2**22) as ws:
            start = {"type": "start", "language": self.language, "sample_rate": audio.sample_rate,
                     "output_sample_rate": 16000, "mode": self.mode, "params": self.params}
            if self.token:
                start["token"] = self.token
            await ws.send(json.dumps(start))
            reader = asyncio.create_task(self._read(ws, report))
            try:
                if self.wait_for_greeting:
                    await self._wait_quiet(after=0.0, quiet_s=0.6)
                t_start = await self._stream(ws, audio)
                # map the file's speech ends to the caller's clock
                end_times = [t_start + e for e in ends_in_file]
                await self._stream_silence_until_reply_done(ws, t_start + audio.duration)
                report.latencies_ms = self._latencies(end_times)
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "end"}))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ended.wait(), 10)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
        bot_turns = [t for t in report.turns if t["speaker"] == "bot"]
        # attach client-measured latency to the bot turns that answered the caller
        answered = [t for t in bot_turns if t.get("metrics") and t["metrics"].get("voice_to_voice_ms")]
        for turn, lat in zip(answered, report.latencies_ms, strict=False):
            turn["latency_ms"] = lat
        return report

    async def _read(self, ws: Any, report: CallReport) -> None:
        async for message in ws:
            now = time.monotonic()
            if isinstance(message, bytes):
                self._last_bot_audio = now
                self._bot_audio_times.append(now)
                report.bot_audio.append(Pcm.from_bytes(message, report.output_rate))
                continue
            msg = json.loads(message)
            report.events.append(msg)
            kind = msg.get("type")
            if kind == "started":
                report.call_id = msg["call_id"]
                report.output_rate = msg["sample_rate"]
            elif kind == "state":
                self._state = msg["state"]
            elif kind == "transcript":
                turn = {k: msg.get(k) for k in ("speaker", "text", "start_s", "end_s", "interrupted", "metrics")}
                turn["latency_ms"] = (msg.get("metrics") or {}).get("voice_to_voice_ms")
                report.turns.append(turn)
            elif kind == "red_flag":
                report.red_flags.extend(msg.get("red_flags", []))
            elif kind == "outcome":
                report.result.update({k: v for k, v in msg.items() if k != "type"})
            elif kind == "ended":
                report.result.update(msg.get("result") or {})
                report.end_reason = msg.get("reason", "")
                self._ended.set()
            elif kind == "error":
                report.events.append(msg)
        self._ended.set()

    async def _wait_quiet(self, after: float, quiet_s: float, timeout: float | None = None) -> None:
        """Wait until the bot has spoken (if it will) and then been quiet for `quiet_s`."""
        deadline = time.monotonic() + (timeout or self.reply_timeout_s)
        while time.monotonic() < deadline and not self._ended.is_set():
            heard_since = self._last_bot_audio > after
            quiet = time.monotonic() - self._last_bot_audio >= quiet_s
            if heard_since and quiet and self._state in ("listening", "ended"):
                return
            await asyncio.sleep(0.05)

    async def _stream(self, ws: Any, audio: Pcm) -> float:
        """Send the file in 20 ms frames on a real-time clock; returns when sending began."""
        frame = int(audio.sample_rate * FRAME_S)
        t0 = time.monotonic()
        for i, offset in enumerate(range(0, len(audio), frame)):
            chunk = audio.samples[offset : offset + frame]
            await ws.send(chunk.astype("<i2").tobytes())
            delay = t0 + (i + 1) * FRAME_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        return t0

    async def _stream_silence_until_reply_done(self, ws: Any, since: float) -> None:
        """A live line keeps carrying (silent) audio while the caller listens to the reply."""
        silence = np.zeros(int(self._rate * FRAME_S), dtype="<i2").tobytes()
        deadline = time.monotonic() + self.reply_timeout_s
        await ws.send(json.dumps({"type": "ping"}))  # also tells us the socket still works
        next_at = time.monotonic()
        while time.monotonic() < deadline and not self._ended.is_set():
            replied = self._last_bot_audio > since
            if replied and time.monotonic() - self._last_bot_audio > 1.0 and self._state == "listening":
                return
            await ws.send(silence)
            next_at += FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _latencies(self, end_times: list[float]) -> list[float]:
        """For each end of caller speech, the first bot audio that arrived after it."""
        out = []
        for i, end in enumerate(end_times):
            nxt = end_times[i + 1] if i + 1 < len(end_times) else float("inf")
            first = next((t for t in self._bot_audio_times if end < t < nxt), None)
            if first is not None:
                out.append(round((first - end) * 1000, 1))
        return out
