"""Runs the real CareCall server as a process, the way `make demo` does, for benchmarks and tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CARECALL = str(Path(sys.executable).with_name("carecall"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def rss_mb(self) -> float:
        """Resident memory of the server and its children (the embedded LLM server)."""
        total = 0
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
            pids += [int(p) for p in children]
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024


# Admission (voice/hub.py) refuses calls while the latency budget is broken (event-loop lag, ASR queue,
# voice-to-voice p95): right for a hospital, wrong for a test of something else on a loaded CI machine
# (two suites on 2 cores lag the loop past 0.2 s). Servers started for tests and benchmarks relax it;
# admission has its own tests (tests/voice/test_hub_admission.py, tests/cluster).
RELAXED_BUDGET: dict[str, str] = {
    "CARECALL_BUDGET_VOICE_TO_VOICE_P95_S": "60",
    "CARECALL_BUDGET_QUEUE_WAIT_P95_S": "60",
    "CARECALL_BUDGET_LOOP_LAG_P95_S": "60",
}


def start_server(data_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 180.0) -> RunningServer:
    port = free_port()
    env = {
        # capacity is derived from the cores: tests run several calls at once, so they keep a fixed
        # limit unless the environment or extra_env sets its own
        "CARECALL_MAX_CONCURRENT_CALLS": "8",
        **RELAXED_BUDGET,
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
