"""Warm start: every fixed phrase is rendered at start-up, so the first call takes its phrases from the
cache like the hundredth does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from dialogue.fixed_phrases import fixed_phrases
from voice.audio import Pcm
from voice.tts.cache import CachingSynthesizer
from voice.tts.warm import WarmReport, clauses_of, warm_phrases


class CountingVoice:
    language = "en"
    sample_rate = 16000

    def __init__(self, fail_on: str = "") -> None:
        self.rendered: list[str] = []
        self.fail_on = fail_on

    async def synthesize(self, text: str) -> AsyncIterator[Pcm]:
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("cannot say that")
        self.rendered.append(text)
        yield Pcm.silence(0.01, 16000)


def test_fixed_phrases_cover_greeting_questions_and_advice_with_blanks_filled() -> None:
    phrases = fixed_phrases({"zh": "120", "en": "911"})
    for lang in ("zh", "en"):
        assert phrases[lang][0].startswith(("Hello", "您好"))  # the greeting first
        assert len(phrases[lang]) > 100  # protocol questions and safety nets too
        assert not any("{" in p for p in phrases[lang])
    assert any("911" in p for p in phrases["en"]) and any("120" in p for p in phrases["zh"])


async def test_warming_renders_every_clause_once_in_order_and_survives_a_bad_phrase() -> None:
    voice = CountingVoice(fail_on="bad")
    cache = CachingSynthesizer(voice)
    texts = ["Hello, this is CareCall. This call is recorded.", "Is it all right?", "A bad one.", "Is it all right?"]
    report = await warm_phrases({"en": cache}, {"en": texts})
    expected = [*clauses_of(texts[0], "en"), "Is it all right?"]
    assert voice.rendered == expected
    assert report.done and report.failed == 1 and report.rendered == len(expected)
    for clause in expected:  # what a call asks for now costs no synthesis
        assert [c async for c in cache.synthesize(clause)]
    assert cache.hits == len(expected) and voice.rendered == expected


@pytest.mark.models
async def test_the_server_warms_every_fixed_phrase_at_start_up(carecall_server) -> None:
    async with httpx.AsyncClient(base_url=carecall_server.base_url) as client:
        # The warm-up's own progress report. All ~770 clauses take minutes on a loaded 2-core machine
        # (bench/latency.py measures it); the greetings and the common texts come first: wait for those.
        for _ in range(400):
            warm = (await client.get("/healthz")).json()["warm"]
            if warm["done"] or warm["rendered"] >= 40:
                break
            await asyncio.sleep(0.5)
    assert warm["clauses"] > 500, warm
    assert warm["rendered"] >= 40, warm


def test_report_defaults() -> None:
    assert WarmReport().done is False
