"""Seeded, bounded generators of malformed input for the attack suite: JSON messages (wrong types,
non-finite numbers, deep nesting, truncation, byte flips, invalid UTF-8, huge values), SDP offers
and SIP datagrams. Pure functions of a `random.Random`, so a failure names its seed and replays."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

WEIRD: list[Any] = [
    None, True, False, 0, -1, 1.5, 16000.0, 8000.5, -0.0, 2**63, -(2**63) - 1, 10**40, "", " ", "16000", "zh\u0000",
    "NaN", "é" * 300, "x" * 5000, [], {}, [[[]]], {"a": {"b": {"c": None}}}, ["zh", "en"], {"$gt": ""},
    "../../etc/passwd", "<script>alert(1)</script>", "'; DROP TABLE calls; --", "\u202e\u0627",
]
LITERALS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 5000, "0x10", "01", "+1", ".5", "tru", "nul",
            "1e-999999", "[", "{", '"\\ud800"', '"\\u0000"', "[]" * 3]


def deep(depth: int, opener: str = "[") -> str:
    closer = {"[": "]", "{": "}"}[opener]
    if opener == "{":
        return '{"a":' * depth + "1" + "}" * depth
    return opener * depth + closer * depth


def with_literal(base: dict[str, Any], key: str, literal: str) -> str:
    """`base` as JSON text with `key`'s value replaced by a raw literal (NaN, 1e999, an unclosed [...)."""
    marker = "__LITERAL__"
    return json.dumps({**base, key: marker}).replace(json.dumps(marker), literal)


def mutate_json(rng: random.Random, base: dict[str, Any]) -> str | bytes:
    """One malformed variant of the message `base` (text, or bytes where text cannot carry it)."""
    keys = list(base) or ["type"]
    key = rng.choice(keys)
    kind = rng.randrange(12)
    if kind == 0:
        return json.dumps({**base, key: rng.choice(WEIRD)})
    if kind == 1:
        return with_literal(base, key, rng.choice(LITERALS))
    if kind == 2:
        return with_literal(base, key, deep(rng.choice([33, 100, 1000, 3000, 10000, 20000]), rng.choice("[{")))
    if kind == 3:
        return json.dumps({k: v for k, v in base.items() if k != key})
    if kind == 4:
        junk = {f"k{rng.randrange(10**6)}": rng.choice(WEIRD) for _ in range(rng.randrange(1, 20))}
        return json.dumps({**base, **junk})
    if kind == 5:
        text = json.dumps(base)
        return text[: rng.randrange(len(text))]
    if kind == 6:
        data = bytearray(json.dumps(base).encode())
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(32, 127)
        return data.decode("ascii", errors="replace")
    if kind == 7:
        return json.dumps(rng.choice([[base], "start", 16000, None, True, [], base.get(key)]))
    if kind == 8:
        return b"\xff\xfe" + json.dumps(base).encode() + bytes(rng.randrange(256) for _ in range(8))
    if kind == 9:
        return json.dumps({**base, key: "A" * rng.choice([1000, 60_000, 70_000])})
    if kind == 10:
        return json.dumps({**base, "type": rng.choice([["start"], {"t": "start"}, 1, None, "START", "start "])})
    return deep(rng.choice([50, 5000, 30000]), rng.choice("[{"))


def json_cases(seed: int, base: dict[str, Any], n: int) -> Iterator[str | bytes]:
    rng = random.Random(seed)
    for _ in range(n):
        yield mutate_json(rng, base)


# --- SDP and SIP -------------------------------------------------------------------------------
def mutate_sdp(rng: random.Random, sdp: str) -> str:
    lines = sdp.split("\r\n")
    kind = rng.randrange(8)
    if kind == 0 and lines:
        del lines[rng.randrange(len(lines))]
    elif kind == 1:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice([
            "a=candidate:1 1 udp 2130706431 10.255.255.1 9 typ host", "a=candidate:x", "m=audio -1 RTP/AVP",
            "c=IN IP4 0.0.0.0", "a=fingerprint:sha-256 ZZ", "a=ice-ufrag:", "a=rtpmap:111 opus/48000/2" * 50,
            "a=candidate:1 1 udp 1 ::ffff:999.1.1.1 99999 typ host", "a=ssrc:99999999999999999999 cname:x"]))
    elif kind == 2:
        i = rng.randrange(len(lines))
        lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
    elif kind == 3:
        return sdp[: rng.randrange(len(sdp))]
    elif kind == 4:
        return "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 400)))
    elif kind == 5:
        lines = lines * rng.randrange(2, 8)
    elif kind == 6:
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace(" ", "  ").replace("=", "")
    else:
        return sdp.replace("audio", rng.choice(["video", "application", "", "audio audio"]))
    return "\r\n".join(lines)


SIP_TEMPLATE = (
    "{method} sip:en@127.0.0.1:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK{branch};rport\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:fuzzer@127.0.0.1>;tag={tag}\r\n"
    "To: <sip:en@127.0.0.1:{port}>\r\n"
    "Call-ID: fuzz-{call}@127.0.0.1\r\n"
    "CSeq: 1 {method}\r\n"
    "Contact: <sip:fuzzer@127.0.0.1:{src}>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n{body}"
)
# G.729 only: an INVITE that survives mutation is refused (488) rather than answered, so fuzzing never
# takes a line from the good call that runs beside it
SIP_SDP = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           "m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n")
SIP_METHODS = ["INVITE", "OPTIONS", "BYE", "CANCEL", "ACK", "REGISTER", "INFO", "REFER", "NOTIFY", "PRACK", "UPDATE",
               "MESSAGE", "FOO", "", "INVITE INVITE"]


def sip_message(rng: random.Random, port: int, src: int) -> str:
    method = rng.choice(SIP_METHODS[:6])
    body = SIP_SDP if method == "INVITE" else ""
    return SIP_TEMPLATE.format(method=method, port=port, src=src, branch=rng.randrange(10**9),
                               tag=rng.randrange(10**9), call=rng.randrange(10**12), length=len(body), body=body)


def mutate_sip(rng: random.Random, port: int, src: int) -> bytes:
    text = sip_message(rng, port, src)
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    kind = rng.randrange(14)
    if kind == 0:
        lines = [ln for ln in lines if not ln.lower().startswith(rng.choice(["via", "call-id", "cseq", "from", "to"]))]
    elif kind == 1:
        lines = [rng.choice([f"CSeq: {v}" for v in ("abc INVITE", "99999999999999999999 INVITE", "1", "-5 BYE",
                                                   "1.5 INVITE", "", "1 ", "4294967296 OPTIONS")])
                 if ln.startswith("CSeq") else ln for ln in lines]
    elif kind == 2:
        lines = [rng.choice(["Content-Length: -1", "Content-Length: 99999999", "Content-Length: x",
                             "Content-Length: 1e9", "Content-Length: 0"]) if ln.startswith("Content-Length") else ln
                 for ln in lines]
    elif kind == 3:
        lines[0] = rng.choice(["INVITE", "SIP/2.0 200 OK", "INVITE sip: SIP/2.0", "INVITE sip:x@y SIP/9.9",
                               "SIP/2.0 999999 X", "SIP/2.0 abc OK", " INVITE sip:en@127.0.0.1 SIP/2.0",
                               f"{rng.choice(SIP_METHODS)} sip:en@127.0.0.1 SIP/2.0"])
    elif kind == 4:
        lines.insert(rng.randrange(1, len(lines) + 1), f"X-Junk: {'A' * rng.choice([100, 4000, 30000])}")
    elif kind == 5:
        lines = [ln for ln in lines for _ in range(rng.randrange(1, 4))]
    elif kind == 6:
        i = rng.randrange(1, len(lines))
        lines[i] = lines[i].replace(":", "", 1)
    elif kind == 7:
        body = mutate_sdp(rng, body or SIP_SDP)
    elif kind == 8:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1500)))
    elif kind == 9:
        return text.encode()[: rng.randrange(len(text))]
    elif kind == 10:
        lines = [ln.replace("127.0.0.1", rng.choice(["0.0.0.0", "999.1.1.1", "[::1", "", "a" * 300]))
                 for ln in lines]
    elif kind == 11:
        lines = [ln.replace("<", "").replace(">", "") if rng.random() < 0.5 else ln for ln in lines]
    elif kind == 12:
        return (head + "\r\n\r\n" + body).replace("\r\n", rng.choice(["\n", "\r", "\r\n\r\n", "\x00"])).encode()
    else:
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8") + b"\xff\xfe\xfa" * rng.randrange(1, 50)
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", errors="replace")
