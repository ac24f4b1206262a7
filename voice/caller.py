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
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import websockets

from voice.audio import Pcm
from voice.endpointer import Endpointer, EndpointerConfig, SpeechEnded
from voice.resample import resample

FRAME_S = 0.02
SEND_RATES = (8000, 16000, 24000, 48000)


async def fetch_call_token(ws_url: str, language: str, timeout_s: float = 10.0) -> str | None:
    """A call token from the server's /widget/token (what the widget does), so that a /ws/call
    that requires one (CARECALL_CALL_TOKEN_REQUIRED, the default) can be opened. None when the
    server gives none (an old server, or a test server without the widget)."""
    import httpx

    parts = urlsplit(ws_url)
    base = urlunsplit(("https" if parts.scheme == "wss" else "http", parts.netloc, "", "", ""))
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            r = await client.post(f"{base}/widget/token", json={"lang": language})
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    token = r.json().get("token")
    return token if isinstance(token, str) else None


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


class CallerSession:
    """A live line to CareCall: audio flows every 20 ms (silence when the caller is quiet), as on a
    real phone or browser. `say` puts speech on the line; the rest waits for what the bot does."""

    def __init__(self, url: str, language: str, *, sample_rate: int = 16000, mode: str = "triage",
                 token: str | None = None, params: dict[str, Any] | None = None,
                 fetch_token: bool = True) -> None:
        self.url = url
        self.fetch_token = fetch_token  # no token given: ask the server for one, as the widget does
        self.language = language
        self.rate = sample_rate
        self.mode = mode
        self.token = token
        self.params = params or {}
        self.report = CallReport(language=language)
        self.state = "connecting"
        self.last_bot_audio = 0.0
        self.bot_audio_times: list[float] = []
        self.speech_end_times: list[float] = []
        self.ended = asyncio.Event()
        self._queue: list[np.ndarray] = []
        self._frame = int(sample_rate * FRAME_S)
        self._ws: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CallerSession:
        if self.rate not in SEND_RATES:
            raise ValueError(f"the call protocol takes {SEND_RATES} Hz, not {self.rate}: resample first")
        if self.token is None and self.fetch_token:
            self.token = await fetch_call_token(self.url, self.language)
        self._ws = await websockets.connect(self.url, max_size=2**22)
        start: dict[str, Any] = {"type": "start", "language": self.language, "sample_rate": self.rate,
                                 "output_sample_rate": 16000, "mode": self.mode, "params": self.params}
        if self.token:
            start["token"] = self.token
        await self._ws.send(json.dumps(start))
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._pump())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(Exception):
            await self._ws.close()

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(payload))

    async def say(self, audio: Pcm) -> float:
        """Speak `audio` on the line in real time; returns when the last frame went out."""
        if audio.sample_rate != self.rate:
            audio = resample(audio, self.rate)
        ends = speech_ends(audio)
        frames = [audio.samples[i : i + self._frame] for i in range(0, len(audio), self._frame)]
        done = asyncio.get_running_loop().create_future()
        self._queue.extend(frames)
        self._queue.append(done)  # type: ignore[arg-type]
        t_start = await done - audio.duration
        self.speech_end_times.extend(t_start + e for e in ends)
        return t_start + audio.duration

    async def _pump(self) -> None:
        try:
            await self._pump_frames()
        finally:  # the line died: nobody may wait forever for speech that will never be sent
            for item in self._queue:
                if isinstance(item, asyncio.Future) and not item.done():
                    item.set_exception(ConnectionError("the call's connection closed"))
            self._queue.clear()

    async def _pump_frames(self) -> None:
        silence = np.zeros(self._frame, dtype=np.int16)
        next_at = time.monotonic()
        while True:
            item = self._queue.pop(0) if self._queue else silence
            if isinstance(item, asyncio.Future):
                item.set_result(time.monotonic())
                continue
            if len(item) < self._frame:
                item = np.concatenate([item, silence[: self._frame - len(item)]])
            await self._ws.send(item.astype("<i2").tobytes())
            next_at += FRAME_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def _read(self) -> None:
        report = self.report
        try:
            async for message in self._ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.last_bot_audio = now
                    self.bot_audio_times.append(now)
                    report.bot_audio.append(Pcm.from_bytes(message, report.output_rate))
                    continue
                msg = json.loads(message)
                msg["_at"] = now
                report.events.append(msg)
                kind = msg.get("type")
                if kind == "started":
                    report.call_id = msg["call_id"]
                    report.output_rate = msg["sample_rate"]
                elif kind == "state":
                    self.state = msg["state"]
                elif kind == "transcript":
                    turn = {k: msg.get(k) for k in ("speaker", "text", "start_s", "end_s", "interrupted", "metrics")}
                    turn["latency_ms"] = (msg.get("metrics") or {}).get("voice_to_voice_ms")
                    report.turns.append(turn)
                elif kind == "red_flag":
                    report.red_flags.extend(msg.get("red_flags", []))
                elif kind == "outcome":
                    report.result.update({k: v for k, v in msg.items() if k not in ("type", "_at")})
                elif kind == "ended":
                    report.result.update(msg.get("result") or {})
                    report.end_reason = msg.get("reason", "")
                    self.ended.set()
        finally:
            self.ended.set()

    async def wait_bot_quiet(self, *, since: float, quiet_s: float = 1.0, timeout: float = 30.0) -> bool:
        """Wait until the bot has spoken after `since` and then stayed quiet (back to listening)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.ended.is_set():
            spoke = self.last_bot_audio > since
            if spoke and time.monotonic() - self.last_bot_audio >= quiet_s and self.state == "listening":
                return True
            await asyncio.sleep(0.05)
        return False

    async def wait_bot_audio(self, *, since: float, timeout: float = 30.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.ended.is_set():
            first = next((t for t in self.bot_audio_times if t > since), None)
            if first is not None:
                return first
            await asyncio.sleep(0.02)
        return None

    async def wait_event(self, kind: str, *, timeout: float = 30.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.report.events:
                if e.get("type") == kind:
                    return e
            if self.ended.is_set():
                return None
            await asyncio.sleep(0.02)
        return None

    async def hang_up(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(Exception):
            await self.send_json({"type": "end"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), timeout)

    def latencies(self) -> list[float]:
        """For each end of caller speech, the first bot audio that arrived after it (ms)."""
        out = []
        ends = self.speech_end_times
        for i, end in enumerate(ends):
            nxt = ends[i + 1] if i + 1 < len(ends) else float("inf")
            first = next((t for t in self.bot_audio_times if end < t < nxt), None)
            if first is not None:
                out.append(round((first - end) * 1000, 1))
        return out


async def scripted_call(url: str, language: str, utterances: list[Pcm], *, mode: str = "triage",
                        token: str | None = None, reply_timeout_s: float = 30.0) -> CallReport:
    """Greeting, then each utterance once the bot has answered the previous one; then hang up."""
    rate = utterances[0].sample_rate if utterances and utterances[0].sample_rate in SEND_RATES else 16000
    async with CallerSession(url, language, sample_rate=rate, mode=mode, token=token) as line:
        await line.wait_bot_quiet(since=0.0, quiet_s=0.5, timeout=reply_timeout_s)
        for audio in utterances:
            if line.ended.is_set():
                break
            sent = await line.say(audio)
            await line.wait_bot_quiet(since=sent, quiet_s=1.0, timeout=reply_timeout_s)
        await line.hang_up()
        report = line.report
        report.latencies_ms = line.latencies()
    answered = [t for t in report.turns if t["speaker"] == "bot" and (t.get("metrics") or {}).get("voice_to_voice_ms")]
    for turn, lat in zip(answered, report.latencies_ms, strict=False):
        turn["latency_ms"] = lat
    return report
