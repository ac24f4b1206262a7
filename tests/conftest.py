"""Fixtures shared by every test package: free ports, speech made by the project's own voices,
and the real CareCall server started as a process, as `make demo` starts it."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.harness import RunningServer, free_port, start_server, stop_server  # noqa: F401  (re-exported for tests)
from tests.records.fixtures import (  # noqa: F401  (records DB fixtures)
    _postgres_template,
    _sqlite_template,
    database,
    db_url,
    empty_db_url,
    postgres_server,
)

ROOT = Path(__file__).resolve().parent.parent
CARECALL = str(Path(sys.executable).with_name("carecall"))


class ManualClock:
    """A clock the test moves by hand (`clock.t += 5`), for code that takes `clock: Callable[[], float]`."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


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
        audio = voices[lang].synthesize_blocking(text)  # type: ignore[attr-defined]
        write_wav(path, audio)
        return audio

    return synth


@pytest.fixture(scope="session")
def carecall_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real server on embedded models, shared by the tests of a session."""
    server = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield server
    finally:
        stop_server(server.process)


def add_user(server: RunningServer, username: str, password: str) -> None:
    """A console account on a running product, made the way an administrator makes one (the CLI)."""
    import subprocess

    carecall = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "carecall"
    done = subprocess.run([str(carecall), "user", "add", "--password-stdin", username], input=password + "\n",
                          env=server.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def poll(predicate, timeout_s: float, what: str | Callable[[], str]):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it is truthy (for state in another process, where there is no event to
    wait on), within a generous bound; its value, or an AssertionError naming `what` (a callable is
    asked only on failure: a server log tail, say)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        time.sleep(0.3)
    return value


async def apoll(predicate, timeout_s: float, what: str | Callable[[], str], every_s: float = 0.02):  # type: ignore[no-untyped-def]
    """`poll` inside an event loop: for state a reader task updates as messages arrive (audio a peer
    received, turns a client saw), where no event is exposed to wait on."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(every_s)
    return value
