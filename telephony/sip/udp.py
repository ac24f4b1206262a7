"""aiosipua's UDP transport, adapted: bound without its protocol's isinstance assert (which fails on
Python 3.11), counting what it cannot parse, one log line per bad message (no traceback), and the
INVITE's Record-Route copied into our responses."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosipua import SipMessage, SipRequest, SipResponse
from aiosipua.transport import UdpSipTransport, _stamp_via_received

log = logging.getLogger("carecall.telephony.sip")


class SipUdp(UdpSipTransport):
    """aiosipua's UDP transport, bound without its protocol's isinstance assert (which fails on
    Python 3.11, whose selector datagram transport is not a DatagramTransport subclass), and
    counting what it cannot parse."""

    malformed = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Call-ID → the INVITE's Record-Route headers: copied into our responses (RFC 3261 §12.1.1),
        # which aiosipua leaves out, so that a proxy (Kamailio) stays on the dialog's path.
        self.record_routes: dict[str, list[str]] = {}

    def send_reply(self, response: SipResponse) -> None:
        routes = self.record_routes.get(response.call_id or "")
        if routes and 100 < response.status_code < 300 and not response.headers.get("record-route"):
            for route in routes:
                response.headers.append("Record-Route", route)
        super().send_reply(response)

    async def start(self) -> None:
        owner = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                owner._dispatch(data, (str(addr[0]), int(addr[1])))

            def error_received(self, exc: Exception) -> None:
                log.warning("SIP socket error: %s", exc)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Proto, local_addr=self.local_addr)
        self._udp_transport = transport  # type: ignore[assignment]

    def _dispatch(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = SipMessage.parse(data)
            if isinstance(msg, SipRequest):
                _stamp_via_received(msg, addr)
        except Exception as exc:  # garbage on the port: one line, no traceback, nothing else happens
            self.malformed += 1
            log.warning("ignoring a malformed SIP message from %s:%d (%s)", addr[0], addr[1], str(exc)[:80])
            return
        if self.on_message is not None:
            try:
                self.on_message(msg, addr)
            except Exception as exc:  # a message we cannot handle: one line; the traceback only at debug
                self.malformed += 1
                log.warning("could not handle a SIP %s from %s:%d: %s", str(getattr(msg, "method", "response"))[:20],
                            addr[0], addr[1], repr(exc)[:120])
                log.debug("SIP handling error", exc_info=True)
