"""Fixtures shared by every test package: free ports, speech made by the project's own voices,
and the real CareCall server started as a process, as `make demo` starts it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.records.fixtures import database, db_url, postgres_server  # noqa: F401  (records DB fixtures)

ROOT = Path(__file__).resolve().parent.parent
CARECALL = str(Path(sys.executable).with_name("carecall"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def speech_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def say(speech_cache: Path) -> Callable[[str, str], object]:
    """`say(text, lang) -> Pcm`: the text spoken by the project's own voice (Piper for English,
    the Mandarin FastSpeech2 voice for Chinese), cached per session."""
    from concurrent.futures import ThreadPoolExecutor

    from settings import Settings
    from voice.audio import Pcm
    from voice.caller import read_wav, write_wav
    from voice.tts.mandarin import MandarinSynthesizer
    from voice.tts.piper import PiperSynthesizer

    settings = Settings()
    executor = ThreadPoolExecutor(max_workers=1)
    voices: dict[str, object] = {}

    def synth(text: str, lang: str) -> Pcm:
        key = hashlib.sha1(f"{lang}:{text}".encode()).hexdigest()[:16]
        path = speech_cache / f"{key}.wav"
        if path.exists():
            return read_wav(path)
        if lang not in voices:
            cls = PiperSynthesizer if lang == "en" else MandarinSynthesizer
            voices[lang] = cls.from_settings(settings, executor)
        voice = voices[lang]

        async def collect() -> Pcm:
            parts = [p async for p in voice.synthesize(text)]  # type: ignore[attr-defined]
            return Pcm.concat(parts, voice.sample_rate)  # type: ignore[attr-defined]

        audio = asyncio.run(collect())
        write_wav(path, audio)
        return audio

    return synth


@dataclass
class RunningServer:
    base_url: str
    ws_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> RunningServer:
    port = free_port()
    env = {
        **os.environ,
        "CARECALL_DATA_DIR": str(data_dir),
        "CARECALL_LLM_PORT": str(free_port()),
        "CARECALL_PORT": str(port),
        **(extra_env or {}),
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([CARECALL, "serve", "--port", str(port)], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return RunningServer(base, f"ws://127.0.0.1:{port}/ws/call", data_dir, proc, env, log_path)
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"server did not start in {timeout} s: {log_path.read_text(errors='replace')[-3000:]}")


def stop_server(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def carecall_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real server on embedded models, shared by the tests of a session."""
    server = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        stop_server(server.process)
