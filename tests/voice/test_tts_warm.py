"""Warm start: every fixed phrase is rendered at start-up, so the first call takes its phrases from the
cache like the hundredth does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from bench.harness import RunningServer, start_server, stop_server
from dialogue.fixed_phrases import fixed_phrases
from dialogue.knowledge import knowledge
from settings import Settings
from voice.audio import Pcm
from voice.caller import scripted_call
from voice.tts.cache import CachingSynthesizer
from voice.tts.warm import WarmReport, clauses_of, spoken_clauses, warm_phrases


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
        assert phrases[lang][0] == knowledge().phrases[lang].texts["greeting"]  # the greeting first
        assert len(phrases[lang]) > 100  # protocol questions and safety nets too
        assert not any("{" in p for p in phrases[lang])
    assert any("911" in p for p in phrases["en"]) and any("120" in p for p in phrases["zh"])
    en = set(phrases["en"])
    # the emergency screen, confirmations, departments and the follow-up's greeting were missing once
    assert {"Any trouble breathing?", "Sorry, what was the number again?",
            "The right department for you is Cardiology.",
            "Hello, this is CareCall, an automated call from the hospital. Are you the patient who was recently "
            "discharged?"} <= en
    assert any(p.startswith("Any chest pain or pressure, ") for p in en)  # a whole bundle
    assert any(p.startswith("So ") and p.endswith(", is that right?") for p in en)  # a finding's confirmation


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


def test_warmed_phrases_are_kept_however_much_free_text_follows() -> None:
    async def run() -> None:
        voice = CountingVoice()
        cache = CachingSynthesizer(voice, max_phrases=2)
        assert await cache.warm("Hello, this is CareCall.")
        for text in ("A free reply.", "Another one.", "And a third."):  # more than the cache holds
            _ = [c async for c in cache.synthesize(text)]
        assert "Hello, this is CareCall." in cache and "A free reply." not in cache
        _ = [c async for c in cache.synthesize("Hello, this is CareCall.")]
        assert voice.rendered.count("Hello, this is CareCall.") == 1 and cache.misses == 3

    asyncio.run(run())


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own: "the first call after a start" must be this test's call."""
    server = start_server(tmp_path_factory.mktemp("fresh-server"))
    try:
        yield server
    finally:
        stop_server(server.process)


async def healthz_warm(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/healthz")).json()["warm"]


@pytest.mark.models
@pytest.mark.timeout(2700)  # a fresh server's whole warm-up, then one call
async def test_after_the_warm_up_the_first_call_takes_every_fixed_phrase_from_the_cache(fresh_server, say) -> None:  # type: ignore[no-untyped-def]
    lines = [say("Yes.", "en"), say("I have a sore throat.", "en")]
    async with httpx.AsyncClient(base_url=fresh_server.base_url, timeout=10) as client:
        # The warm-up's own flag (/healthz); its ~1,700 clauses take ~5 min on 2 quiet cores, 15 on loaded ones.
        deadline = time.monotonic() + 2400
        while not (warm := await healthz_warm(client))["done"]:
            assert time.monotonic() < deadline, f"the warm-up did not finish: {warm}"
            await asyncio.sleep(1)
        assert warm["clauses"] > 1000 and warm["rendered"] == warm["clauses"], warm
        before = warm["cache"]["en"]
        report = await scripted_call(fresh_server.ws_url, "en", lines)
        after = (await healthz_warm(client))["cache"]["en"]
    fixed = {c for text in fixed_phrases({"en": Settings().emergency_number("en")})["en"]
             for c in spoken_clauses(text, "en")}
    spoken = [c for t in report.turns if t["speaker"] == "bot" for c in clauses_of(t["text"], "en")]
    said_fixed = [c for c in spoken if c in fixed]
    # Free text (a read-back of words the recogniser was unsure of: 'I heard: "…".') is synthesised on the
    # call's time; every fixed clause (greeting, complaint question, sore-throat questions) is a hit.
    free = {c for c in spoken if c not in fixed}
    assert len(said_fixed) >= 3, spoken
    assert after["misses"] - before["misses"] <= len(free), (spoken, before, after)
    assert after["hits"] - before["hits"] >= len(said_fixed), (spoken, before, after)


def test_report_defaults() -> None:
    assert WarmReport().done is False
