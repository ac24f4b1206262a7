"""Small things every phone transport needs: a per-call logger, phone-number masking, and reading an
integer a carrier sent (`int_or_none`)."""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any, Protocol

from voice.audio import Pcm
from voice.resample import live_resampler

_DIGITS = re.compile(r"\d")


def int_or_none(value: Any) -> int | None:
    """An integer a carrier sent (a sequence number, a retry count), or None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def mask_number(number: str) -> str:
    """`+8613812345678` → `+86*******678`: enough to tell calls apart, never the whole number."""
    digits = _DIGITS.findall(number or "")
    if len(digits) <= 5:
        return "*" * len(digits)
    keep_head = 2 if number.startswith("+") else 0
    out, seen = [], 0
    for ch in number:
        if ch.isdigit():
            seen += 1
            if seen <= keep_head or seen > len(digits) - 3:
                out.append(ch)
            else:
                out.append("*")
        elif ch in "+":
            out.append(ch)
    return "".join(out)


class CallLog(logging.LoggerAdapter):
    """Puts `call=<id>` in front of every line, so one call's story can be grepped out."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"call={self.extra.get('call_id', '-')} {msg}", kwargs


def call_log(name: str, call_id: str) -> CallLog:
    return CallLog(logging.getLogger(name), {"call_id": call_id})


class LogOnce:
    """Logs a given complaint once per key (a flood of bad packets must not flood the log)."""

    def __init__(self, log: logging.LoggerAdapter | logging.Logger) -> None:
        self._log = log
        self._seen: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: Any) -> None:
        n = self._seen.get(key, 0)
        self._seen[key] = n + 1
        if n == 0:
            self._log.warning(msg + " (further ones not logged)", *args)

    def count(self, key: str) -> int:
        return self._seen.get(key, 0)


class _Resampler(Protocol):
    def process(self, audio: Pcm) -> Pcm: ...


def caller_resampler(input_rate: int) -> _Resampler:
    """8 kHz phone audio → `input_rate` with as little delay as possible (the call loop does this;
    kept for tools that read phone audio themselves)."""
    return live_resampler(8000, input_rate)
