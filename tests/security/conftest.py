"""The attack suite's target: the real CareCall server, started as `make demo` starts it (real models,
SQLite records, the SIP endpoint on), on loopback, with its production defaults (tokens required,
rate limits, body limits). Console users are made with `carecall user add`, as an operator would.

Every test here reads the server's log afterwards: an unhandled exception anywhere in it (a traceback,
"Exception in ASGI application", an asyncio "Task exception was never retrieved") is a failure."""

from __future__ import annotations

import os
import random
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bench.harness import CARECALL, RunningServer, start_server, stop_server

PASSWORDS = {"admin": "admin-pass-for-tests", "nurse": "nurse-pass-for-tests"}
UNHANDLED = re.compile(
    r"Traceback \(most recent call last\)|Exception in ASGI application|Task exception was never retrieved|"
    r"Exception in callback|Unhandled exception|exception was never retrieved"
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    server: RunningServer
    sip_port: int
    secret_key: str

    @property
    def base(self) -> str:
        return self.server.base_url

    @property
    def ws_call(self) -> str:
        return self.server.ws_url

    @property
    def media_stream(self) -> str:
        return self.server.base_url.replace("http", "ws", 1) + "/telephony/twilio/stream"

    def log_offset(self) -> int:
        return len(self.server.log_text())

    def unhandled_since(self, offset: int) -> list[str]:
        """Unhandled-exception lines the server logged after `offset` (with some context)."""
        text = self.server.log_text()[offset:]
        out = []
        for m in UNHANDLED.finditer(text):
            out.append(text[max(0, m.start() - 200): m.end() + 1500])
        return out


def _add_user(env: dict[str, str], name: str, role: str) -> None:
    subprocess.run([CARECALL, "user", "add", "--role", role, "--password-stdin", name],
                   input=PASSWORDS[role] + "\n", text=True, env=env, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp("security-server")
    sip_port = free_udp_port()
    lo = random.Random(os.getpid()).randrange(32000, 39000, 100)
    secret = secrets.token_urlsafe(32)
    env = {
        "CARECALL_SIP_ENABLED": "true", "CARECALL_SIP_PORT": str(sip_port), "CARECALL_SIP_HOST": "127.0.0.1",
        "CARECALL_SIP_RTP_PORT_MIN": str(lo), "CARECALL_SIP_RTP_PORT_MAX": str(lo + 99),
        "CARECALL_SIP_DEFAULT_LANGUAGE": "en",
        "CARECALL_WEBRTC_ICE_ADDRESSES": '["127.0.0.1"]',
        "CARECALL_SECRET_KEY": secret,
    }
    base_env = {**os.environ, "CARECALL_DATA_DIR": str(data_dir), **env}
    for name, role in (("ada", "admin"), ("nina", "nurse")):
        _add_user(base_env, name, role)
    server = start_server(data_dir, env)
    try:
        yield Target(server, sip_port, secret)
    finally:
        stop_server(server.process)
