"""Warm start: every fixed phrase synthesised once at start-up, in the background, so the first call
is as fast as the hundredth (a cold phrase cost 0.2-0.6 s of TTS on the first call; a cached one 0).

Phrases are split into clauses exactly as the call loop splits them (ClauseSplitter), so what is
cached is what will be asked for. They render one at a time, most urgent first (the greeting before
the protocol questions): warming never floods the executor that live calls use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from voice.textnorm import ClauseSplitter

log = logging.getLogger("carecall.tts.warm")


@dataclass
class WarmReport:
    clauses: int = 0
    rendered: int = 0  # clauses in the cache afterwards (rendered here, or already there)
    failed: int = 0
    seconds: float = 0.0
    done: bool = False


def clauses_of(text: str, language: str, *, first: bool = True) -> list[str]:
    """`text`'s clauses as a call cuts them when it opens a reply (`first`), or follows other words in it
    ("Sorry, was that a yes or a no?" before a question): a later clause needs more characters before a
    comma ends it (ClauseSplitter), so the same question can be cut in two ways."""
    splitter = ClauseSplitter(language)
    if not first:
        splitter = ClauseSplitter(language, first_min_chars=splitter.min_chars)
    return splitter.push(text) + splitter.flush()


def spoken_clauses(text: str, language: str) -> list[str]:
    """Every clause a call may ask the voice for when it says `text`: both cuts, the opening one first."""
    return list(dict.fromkeys(clauses_of(text, language) + clauses_of(text, language, first=False)))


async def warm_phrases(synthesizers: Mapping[str, object], phrases: Mapping[str, Iterable[str]],
                       report: WarmReport | None = None) -> WarmReport:
    """Render `phrases[lang]` (in order) into `synthesizers[lang]`'s cache (any object with
    `async warm(text)`); a phrase that fails is logged and skipped."""
    report = report or WarmReport()
    started = time.monotonic()
    queue: list[tuple[str, str]] = []
    for lang, texts in phrases.items():
        if not hasattr(synthesizers.get(lang), "warm"):
            continue
        texts = list(texts)
        # Every phrase as it opens a reply first (the common cut), then the cuts it gets after other words.
        queue += [(lang, c) for text in texts for c in clauses_of(text, lang)]
        queue += [(lang, c) for text in texts for c in clauses_of(text, lang, first=False)]
    # Interleave the languages so both greetings are ready first.
    by_lang: dict[str, list[str]] = {}
    for lang, clause in dict.fromkeys(queue):
        by_lang.setdefault(lang, []).append(clause)
    order = [(lang, lst[i]) for i in range(max((len(v) for v in by_lang.values()), default=0))
             for lang, lst in by_lang.items() if i < len(lst)]
    report.clauses = len(order)
    for lang, clause in order:
        try:
            if await synthesizers[lang].warm(clause):  # type: ignore[attr-defined]
                report.rendered += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a phrase the voice cannot say must not stop the others
            report.failed += 1
            log.warning("warm start: a %s phrase failed: %r", lang, exc)
        await asyncio.sleep(0)
    report.seconds = round(time.monotonic() - started, 2)
    report.done = True
    log.info("warm start: %d clauses rendered (%d failed) in %.1f s", report.rendered, report.failed,
             report.seconds)
    return report


def warm_health(report: WarmReport, synthesizers: Mapping[str, object]) -> dict[str, Any]:
    """/healthz's `warm`: the warm-up's progress, and per language how many clauses calls took from the
    phrase cache (`hits`) or had synthesised on their own time (`misses`: once the warm-up is done, free
    text only, never a fixed phrase). Counts only: no text leaves the process."""
    cache = {lang: {"hits": getattr(s, "hits", 0), "misses": getattr(s, "misses", 0)}
             for lang, s in synthesizers.items() if hasattr(s, "hits")}
    return {"done": report.done, "clauses": report.clauses, "rendered": report.rendered, "cache": cache}
