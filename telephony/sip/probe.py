"""A blocking SIP OPTIONS probe (`carecall cluster up`, the cluster tests, operators' scripts): the
status a SIP endpoint answers with, or None when nothing answers in time."""

from __future__ import annotations

import socket
import uuid


def options_status(host: str, port: int, *, timeout: float = 1.0, uri: str | None = None) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1" if host.startswith("127.") else "0.0.0.0", 0))
        s.settimeout(timeout)
        me = s.getsockname()[1]
        call_id = uuid.uuid4().hex
        target = uri or f"sip:{host}:{port}"
        msg = (f"OPTIONS {target} SIP/2.0\r\nVia: SIP/2.0/UDP {host if host.startswith('127.') else '0.0.0.0'}:{me};"
               f"branch=z9hG4bK{call_id[:16]};rport\r\nFrom: <sip:probe@127.0.0.1>;tag={call_id[:8]}\r\n"
               f"To: <{target}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), (host, port))
        try:
            while True:
                data = s.recv(8192).decode(errors="replace")
                if call_id in data and data.startswith("SIP/2.0 "):
                    status = int(data.split()[1])
                    if status >= 200:
                        return status
        except (TimeoutError, OSError, ValueError):
            return None
