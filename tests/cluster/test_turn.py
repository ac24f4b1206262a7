"""TURN REST credentials against a real coturn run from the shipped deploy/coturn/turnserver.conf
(ports and secret filled in for loopback): the credential handed out with a widget token allocates a
relay; an expired one, or one signed with another secret, is refused."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aioice import stun, turn
from pydantic import SecretStr

from web.turn import ice_servers, turn_credential

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None, reason="needs coturn")
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "coturn" / "turnserver.conf"
SECRET = "a-test-static-auth-secret"


def free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_udp()
    lines = []
    for line in SHIPPED.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in ("listening-port", "tls-listening-port", "cert", "pkey", "static-auth-secret", "log-file"):
            continue
        lines.append(line)
    lines += [f"listening-port={port}", "listening-ip=127.0.0.1", "relay-ip=127.0.0.1", "no-tls", "no-dtls",
              f"static-auth-secret={SECRET}", "log-file=stdout"]
    conf = tmp_path_factory.mktemp("coturn") / "turnserver.conf"
    conf.write_text("\n".join(lines) + "\n")
    log = open(conf.with_suffix(".log"), "wb")
    proc = subprocess.Popen(["turnserver", "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:  # until it answers a STUN binding
            if _stun_ok(port):
                break
        else:
            raise RuntimeError(f"coturn did not start: {conf.with_suffix('.log').read_text()[-2000:]}")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _stun_ok(port: int) -> bool:
    req = bytes.fromhex("000100002112a442") + b"edgetest0001"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(req, ("127.0.0.1", port))
        try:
            return s.recv(2048)[:2] == b"\x01\x01"
        except OSError:
            return False


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, _ = await asyncio.wait_for(turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password), 10)
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


def settings(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(webrtc_turn_secret=SecretStr(SECRET), webrtc_turn_ttl_s=600,
                           webrtc_turn_urls=["turn:127.0.0.1:3478?transport=udp"], **kw)


async def test_the_credential_given_with_a_widget_token_allocates_a_relay(coturn: int) -> None:
    servers = ice_servers(["stun:127.0.0.1:3478"], settings())
    assert servers[0] == {"urls": "stun:127.0.0.1:3478"}
    turn_entry = servers[1]
    assert turn_entry["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    expiry = int(turn_entry["username"].split(":")[0])
    assert 590 <= expiry - time.time() <= 601  # time-limited
    relayed = await allocate(coturn, turn_entry["username"], turn_entry["credential"])
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0


@pytest.mark.parametrize("case", ["expired", "other secret"])
async def test_an_expired_or_forged_credential_is_refused(coturn: int, case: str) -> None:
    if case == "expired":
        username, credential = turn_credential(SECRET, ttl_s=-60)
    else:
        username, credential = turn_credential("not-the-secret", ttl_s=600)
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(coturn, username, credential)
    assert refused.value.response.attributes["ERROR-CODE"][0] == 401


def test_no_turn_entry_without_a_secret() -> None:
    none = SimpleNamespace(webrtc_turn_secret=SecretStr(""), webrtc_turn_ttl_s=600, webrtc_turn_urls=["turn:x"])
    assert ice_servers(["stun:a"], none) == [{"urls": "stun:a"}]
