"""The embedded LLM: llama-cpp-python's OpenAI-compatible server as a child process of
`carecall serve`. A separate process keeps llama.cpp's compute (and its Python server's GIL) away
from the audio loop, and the product talks to it through exactly the client it uses for vLLM."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import sys
import time
from pathlib import Path

import httpx

log = logging.getLogger("carecall.llama")

MODEL_ALIAS = "smollm2-135m-instruct"


class LlamaServerError(RuntimeError):
    pass


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it when `carecall serve` dies, however it dies
    (kill -9, the OOM killer), so no orphan keeps the model's memory and the port."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class LlamaServer:
    def __init__(self, gguf: Path, *, port: int, threads: int = 1, host: str = "127.0.0.1", n_ctx: int = 2048):
        self.gguf = gguf
        self.host = host
        self.port = port
        self.threads = threads
        self.n_ctx = n_ctx
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._stderr_tail = b""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self, timeout_s: float = 60.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--n_ctx",
            str(self.n_ctx),
            # a second request must not cut off a stream another call is reading
            "--interrupt_requests",
            "False",
        ]
        if await asyncio.to_thread(_port_taken, self.host, self.port):
            # whatever answers there is not the server we are about to start (an orphan of an
            # earlier run, another program): never talk to it as if it were ours
            raise LlamaServerError(f"port {self.port} is already in use; set CARECALL_LLM_PORT to a free one")
        self._proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._stderr_tail = b""
        self._stderr_reader = asyncio.create_task(self._drain_stderr())
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self._proc.returncode is not None:
                    await asyncio.sleep(0.1)  # let the reader catch the last words
                    raise LlamaServerError(
                        f"llama.cpp server exited with {self._proc.returncode}: "
                        f"{self._stderr_tail.decode(errors='replace')[-400:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    r = await client.get(f"{self.base_url}/models", timeout=1.0)
                    if r.status_code == 200:
                        return
                await asyncio.sleep(0.2)
        await self.stop()
        raise LlamaServerError(f"llama.cpp server did not answer on port {self.port} within {timeout_s:.0f} s")

    async def _drain_stderr(self) -> None:
        # Keep reading so the pipe never fills and blocks the server. Only a short tail is kept,
        # for start-up errors, and never logged once serving (request logs could hold patient text).
        if self._proc and self._proc.stderr:
            with contextlib.suppress(Exception):
                while chunk := await self._proc.stderr.read(65536):
                    self._stderr_tail = (self._stderr_tail + chunk)[-2000:]

    async def stop(self) -> None:
        if self._stderr_reader is not None:
            self._stderr_reader.cancel()
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
