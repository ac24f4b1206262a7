"""The decode guards, the per-turn prompt and the batcher, without a model (fast)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from voice.asr import uncertain_words
from voice.asr_batch import DecodeBatcher
from voice.asr_decode import WindowPolicy, collapse_repetition, repeated_span
from voice.asr_terms import MAX_PROMPT_CHARS, load_bias, load_zh_bias
from voice.ports import RecognitionHints, WordInfo

LOOPS = ["胳膊胳膊胳膊胳膊", "我胸口胸口胸口胸口疼", "一二线城市虽然也处于调整中。一二线城市虽然也处于调整中。",
         "I have a pain in my chest. I have a pain in my chest.", "啊啊啊啊啊啊啊"]
SPEECH = ["对对对", "谢谢谢谢", "No, no, no.", "1, 2, 3.", "是是是", "我胸口疼，喘不上气。",
          "ask not what your country can do for you, ask what you can do for your country"]


@pytest.mark.parametrize("text", LOOPS)
def test_whisper_loops_are_detected_and_collapsed(text: str) -> None:
    assert repeated_span(text) is not None
    collapsed = collapse_repetition(text)
    assert repeated_span(collapsed) is None
    assert len(collapsed) < len(text)


@pytest.mark.parametrize("text", SPEECH)
def test_ordinary_repeats_in_speech_are_left_alone(text: str) -> None:
    assert repeated_span(text) is None
    assert collapse_repetition(text) == text


def test_window_fits_the_utterance_with_silence_after_it() -> None:
    pol = WindowPolicy(margin_s=1.5, min_window_s=4, max_window_s=30)  # explicit, not the defaults
    assert pol.window_for(16_000 * 1) == 4  # short answers: the minimum window
    assert pol.window_for(int(16_000 * 9.4)) == 11  # 9.4 s of speech always has 1.5 s of silence after it
    assert pol.window_for(16_000 * 40) == 30


def test_turn_prompt_puts_the_expected_answers_first_within_the_cap() -> None:
    zh = load_zh_bias()
    standing = zh.prompt
    assert standing.startswith("以下是普通话的句子。")
    yes_no = zh.prompt_for(RecognitionHints("yes_no"))
    assert "不是" in yes_no and "没有" in yes_no
    assert "胸口" not in yes_no  # a short answer's prompt carries no symptom terms ("有" → "胳膊")
    sentence = zh.prompt_for(RecognitionHints("yes_no"), audio_s=3.0)  # "是的，我从昨天开始发烧，还咳嗽"
    assert "不是" in sentence and "咳嗽" in sentence
    free = zh.prompt_for(RecognitionHints("free", ("左臂",)))
    assert free.index("左臂") < free.index("胸口")  # the turn's words come before the standing terms
    number = zh.prompt_for(RecognitionHints("number", ("三十八度五",)))
    assert "三十八度五" in number
    many = zh.prompt_for(RecognitionHints("free", tuple(f"症状{i}" for i in range(50))))
    assert len(many) <= MAX_PROMPT_CHARS
    en = load_bias("en").prompt_for(RecognitionHints("yes_no"))
    assert "yes" in en.lower() and len(en) <= MAX_PROMPT_CHARS


def test_uncertain_words_are_the_low_probability_ones_joined_for_mandarin() -> None:
    words = (WordInfo("I", 0.0, 0.1, 0.99), WordInfo("have", 0.1, 0.3, 0.95), WordInfo("fever", 0.3, 0.6, 0.31),
             WordInfo("38.5", 0.6, 1.0, 0.42))
    assert uncertain_words(words, 0.5) == ("fever", "38.5")
    zh = (WordInfo("三", 0, 0.2, 0.3), WordInfo("十", 0.2, 0.4, 0.2), WordInfo("八", 0.4, 0.6, 0.9),
          WordInfo("度", 0.6, 0.8, 0.4))
    assert uncertain_words(zh, 0.5) == ("三十", "度")
    assert uncertain_words((), 0.5) == ()


async def test_batcher_runs_at_once_when_idle_and_batches_what_waits() -> None:
    gate = threading.Event()
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        if batch == [0]:
            gate.wait(5)  # the first decode is slow: the next requests arrive meanwhile
        return [x * 10 for x in batch]

    with ThreadPoolExecutor(2) as ex:
        b: DecodeBatcher[int, int] = DecodeBatcher(run, ex, max_batch=3)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0)  # submitted: [0] is the batch in flight (one at a time), whenever its thread starts
        waiting = [asyncio.ensure_future(b.submit(i, priority=1 if i == 1 else 0)) for i in (1, 2, 3, 4)]
        await asyncio.sleep(0)  # ...and these are queued behind it
        gate.set()
        assert await first == 0
        assert await asyncio.gather(*waiting) == [10, 20, 30, 40]
    assert seen[0] == [0]
    assert seen[1] == [2, 3, 4]  # finals (priority 0) first, three per batch
    assert seen[2] == [1]


async def test_batcher_drops_a_request_cancelled_before_its_turn_and_survives_errors() -> None:
    gate = threading.Event()
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        if 0 in batch:
            gate.wait(5)
        if 9 in batch:
            raise RuntimeError("bad audio")
        return batch

    with ThreadPoolExecutor(1) as ex:
        b: DecodeBatcher[int, int] = DecodeBatcher(run, ex, max_batch=4)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0)  # [0] in flight
        stale = asyncio.ensure_future(b.submit(5))
        await asyncio.sleep(0)  # 5 queued behind it
        stale.cancel()
        gate.set()
        await first
        with pytest.raises(RuntimeError, match="bad audio"):
            await b.submit(9)
        assert await b.submit(7) == 7  # the engine goes on after a failed batch
    assert [5] not in seen and all(5 not in s for s in seen)
