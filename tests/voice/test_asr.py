"""Whisper round trips on the project's own voices, and the Mandarin pinyin term fixer."""

from __future__ import annotations

import numpy as np
import pytest

from voice.asr import TermFixer, load_zh_bias, to_simplified
from voice.audio import Pcm
from voice.ports import Recognizer

# --- the pinyin term fixer (no model needed) ------------------------------------------------------

FIXER = load_zh_bias().fixer

FIXES = [
    ("我的割薄很疼", "我的胳膊很疼"),
    ("我传不上气", "我喘不上气"),
    ("咳出来的是荒谈", "咳出来的是黄痰"),
    ("胸门，头云", "胸闷，头晕"),
    ("一直拉读子", "一直拉肚子"),
    ("有点新黄", "有点心慌"),
    ("鼻子赌得厉害", "鼻子堵得厉害"),  # from the lexicon (fix_from_lexicon), not the word list
    ("一起来就天选地转", "一起来就天旋地转"),
]
LEFT_ALONE = [
    "我这阵子工作很忙",  # 阵子 = 疹子 (zhen zi): the case that made 疹子 a prompt-only term
    "国民经济",  # guo min = 过敏, listed in never_rewrite
    "今天天气很好，我们去公园散步",
    "过了一会儿就没事了",
    "我胳膊疼，喘不上气",  # already right
    "Chest pain 2 days",
    "我在上海自己住",  # shang hai zi ji = 伤害自己: such phrases are never fix terms
    "我们一起去吃饭",
]


@pytest.mark.parametrize(("heard", "fixed"), FIXES)
def test_fixer_repairs_misheard_terms(heard: str, fixed: str) -> None:
    assert FIXER is not None
    assert FIXER.fix(heard) == fixed


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_fixer_leaves_ordinary_words_alone(text: str) -> None:
    assert FIXER is not None
    assert FIXER.fix(text) == text


def test_fixer_refuses_single_syllable_terms() -> None:
    with pytest.raises(ValueError, match="2\\+ hanzi"):
        TermFixer.build(["疼"])


def test_never_rewrite_protects_a_colliding_word() -> None:
    fixer = TermFixer.build(["疹子"], never_rewrite=["一阵子"])
    assert fixer.fix("我一阵子") == "我一阵子"
    assert fixer.fix("身上起了阵子") == "身上起了疹子"  # what 疹子 would do without the guard


def test_prompt_comes_from_the_lexicon_file() -> None:
    bias = load_zh_bias()
    assert bias.prompt.startswith("以下是普通话的句子。")
    assert "喘不上气" in bias.prompt


def test_traditional_output_becomes_simplified() -> None:
    assert to_simplified("頭暈，喘不上氣") == "头晕，喘不上气"


# --- round trips: our own voices speak, Whisper listens ---------------------------------------------

EN_CASES = [
    ("I have chest pain and I can't breathe.", ["chest pain", "breathe"]),
    ("I have had a fever and a bad cough for three days.", ["fever", "cough"]),
]
ZH_CASES = [
    ("我胸口疼，喘不上气。", ["胸口", "喘不上气"]),
    ("我发烧三天了，还一直咳嗽。", ["发烧", "咳嗽"]),
    ("我的胳膊很疼，还有点头晕。", ["头晕"]),
]


@pytest.mark.models
def test_whisper_is_a_recognizer(whisper) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(whisper, Recognizer)


@pytest.mark.models
@pytest.mark.parametrize(("text", "keys"), EN_CASES)
async def test_english_round_trip(whisper, piper_tts, text: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    audio = piper_tts.synthesize_blocking(text)
    result = await whisper.transcribe(audio, "en")
    heard = result.text.lower()
    assert all(k in heard for k in keys), heard
    assert result.language == "en"
    assert result.audio_s == pytest.approx(audio.duration)
    assert result.processing_s > 0


@pytest.mark.models
@pytest.mark.parametrize(("text", "keys"), ZH_CASES)
async def test_mandarin_round_trip(whisper, zh_tts, text: str, keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = await whisper.transcribe(zh_tts.synthesize_blocking(text), "zh")
    assert all(k in result.text for k in keys), result.text
    assert to_simplified(result.text) == result.text


@pytest.mark.models
async def test_phone_band_audio_is_resampled(whisper, piper_tts) -> None:  # type: ignore[no-untyped-def]
    import soxr

    audio = piper_tts.synthesize_blocking("I have chest pain.")
    phone = Pcm.from_float(soxr.resample(audio.to_float(), audio.sample_rate, 8000), 8000)
    result = await whisper.transcribe(phone, "en")
    assert "chest pain" in result.text.lower()


@pytest.mark.models
async def test_partial_pass_is_quick_and_usable(whisper, zh_tts) -> None:  # type: ignore[no-untyped-def]
    result = await whisper.transcribe(zh_tts.synthesize_blocking("我胸口疼，喘不上气。"), "zh", partial=True)
    assert "胸口" in result.text


@pytest.mark.models
@pytest.mark.parametrize("kind", ["silence", "noise"])
async def test_biased_mandarin_invents_no_symptoms(whisper, kind: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    samples = np.zeros(32000) if kind == "silence" else rng.normal(0, 0.01, 32000)
    result = await whisper.transcribe(Pcm.from_float(samples, 16000), "zh")
    terms = ["胸口", "胸闷", "发烧", "咳嗽", "胳膊", "头晕", "呕吐", "喘不上气"]
    assert not any(t in result.text for t in terms), result.text


@pytest.mark.models
async def test_too_short_audio_is_empty(whisper) -> None:  # type: ignore[no-untyped-def]
    result = await whisper.transcribe(Pcm.silence(0.05, 16000), "en")
    assert result.text == ""


def test_mandarin_transcripts_get_chinese_punctuation() -> None:
    from voice.asr import _fullwidth_punctuation

    assert _fullwidth_punctuation("我胸口疼,喘不上气?") == "我胸口疼，喘不上气？"
    assert _fullwidth_punctuation("体温38.5, CT ok") == "体温38.5, CT ok"


@pytest.mark.models
async def test_decoding_never_blocks_the_event_loop(whisper, piper_tts) -> None:  # type: ignore[no-untyped-def]
    """Other calls' audio keeps flowing while Whisper decodes: the loop stays responsive."""
    import asyncio
    import time

    audio = piper_tts.synthesize_blocking("I have had a fever and a bad cough for three days.")
    worst = 0.0
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst, ticks
        while not done.is_set():
            before = time.monotonic()
            await asyncio.sleep(0.01)
            ticks += 1
            worst = max(worst, time.monotonic() - before - 0.01)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker is running
    started = time.monotonic()
    await whisper.transcribe(audio, "en")
    decode_s = time.monotonic() - started
    done.set()
    await tick
    # A decode on the loop would block it for the whole decode: no tick at all until it ends. Counting
    # the ticks holds on a loaded machine too, where one tick may wait long for a core (see `worst`).
    assert ticks >= min(5, decode_s / 0.05), f"{ticks} ticks in a {decode_s:.2f} s decode (worst {worst:.2f} s)"


def test_lexicon_terms_are_plain_symptom_phrases_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voice.asr_terms import lexicon_fix_terms

    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text("findings:\n  self_harm: [伤害自己]\n  chest_pain: [胸口疼, '胸~疼', 胸闷, 胸口有点闷]\n",
                       encoding="utf-8")
    assert lexicon_fix_terms({"findings": ["chest_pain", "self_harm"]}, lexicon) == ["胸口疼"]
    with pytest.raises(ValueError, match=r"not in lexicon\.yaml"):
        lexicon_fix_terms({"findings": ["no_such_finding"]}, lexicon)
