"""What the SIP endpoint checks before aiosipua keeps any state (issue 10 #5): where a message comes
from (trunk allow-list), whether its CSeq is well formed, and a bounded memory of INVITEs refused
statelessly, so that their retransmissions get the same answer and a flood leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from aiosipua import SipRequest, SipResponse

log = logging.getLogger("carecall.telephony.sip")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = ("127.0.0.0/8", "::1/128")


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"CARECALL_SIP_ALLOWED_SOURCES: {text!r} is not an address or CIDR ({exc})") from None


def trunk_addresses(trunk: str) -> list[str]:
    """The addresses of `host[:port]` (resolved once, at start)."""
    host = trunk.rsplit(":", 1)[0] if trunk.count(":") == 1 else trunk
    host = host.strip("[]")
    if not host:
        return []
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)})
    except OSError as exc:
        log.warning("SIP trunk %s does not resolve (%s): only the allow-list admits SIP", host, exc)
        return []


class SourcePolicy:
    """SIP is accepted only from these networks (configured trunk CIDRs; by default loopback and the
    configured trunk's address). Strangers get no answer at all: no reflection, no state."""

    def __init__(self, allowed: Iterable[str], trunk: str = "") -> None:
        given = [a for a in allowed if a.strip()]
        entries = given or [*LOOPBACK, *trunk_addresses(trunk)]
        self.networks: tuple[Network, ...] = tuple(_network(a) for a in entries)
        self.extra: dict[str, int] = {}  # hosts we placed outbound calls to (reference counts)
        self.refused = 0
        self._logged: OrderedDict[str, float] = OrderedDict()

    def allows(self, host: str) -> bool:
        if host in self.extra:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def admit_peer(self, host: str) -> None:
        """Answers from a host we dial directly (a `sip:` URI outside the allow-list) are expected."""
        self.extra[host] = self.extra.get(host, 0) + 1

    def forget_peer(self, host: str) -> None:
        n = self.extra.get(host, 0) - 1
        if n <= 0:
            self.extra.pop(host, None)
        else:
            self.extra[host] = n

    def refuse(self, host: str, port: int, what: str) -> None:
        """Count a refused message; one log line per source per minute (bounded memory)."""
        self.refused += 1
        now = time.monotonic()
        last = self._logged.get(host)
        if last is not None and now - last < 60:
            return
        self._logged[host] = now
        self._logged.move_to_end(host)
        while len(self._logged) > 256:
            self._logged.popitem(last=False)
        log.warning("ignoring SIP %s from %s:%d: not an allowed source (CARECALL_SIP_ALLOWED_SOURCES); "
                    "%d refused so far", what, host, port, self.refused)


def cseq_problem(msg: SipRequest | SipResponse) -> str | None:
    """Why the CSeq header is unusable, or None. RFC 3261 §8.1.1.5: one integer < 2**31 and the
    request's method."""
    raw = msg.headers.get_first("cseq")
    if raw is None:
        return None  # a missing header: aiosipua answers 400 "Missing Required Header" itself
    parts = raw.split()
    if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) >= 2**31:
        return f"malformed CSeq {raw[:40]!r}"
    if isinstance(msg, SipRequest) and parts[1].upper() != msg.method.upper():
        return f"CSeq method {parts[1][:20]!r} is not the request's {msg.method[:20]!r}"
    return None


@dataclass(frozen=True, slots=True)
class Refusal:
    branch: str
    status: int
    reason: str


class RefusedInvites:
    """INVITEs answered with a final error and never stored by aiosipua, remembered for 32 s (Timer H)
    and at most `limit` of them: a retransmission gets the same answer, its ACK is absorbed."""

    def __init__(self, limit: int = 4096, ttl_s: float = 32.0) -> None:
        self.limit = limit
        self.ttl_s = ttl_s
        self._by_call: OrderedDict[str, tuple[float, Refusal]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_call)

    def add(self, call_id: str, refusal: Refusal) -> None:
        now = time.monotonic()
        self._by_call[call_id] = (now + self.ttl_s, refusal)
        self._by_call.move_to_end(call_id)
        while self._by_call and (len(self._by_call) > self.limit or next(iter(self._by_call.values()))[0] < now):
            self._by_call.popitem(last=False)

    def get(self, call_id: str) -> Refusal | None:
        entry = self._by_call.get(call_id)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._by_call[call_id]
            return None
        return entry[1]
