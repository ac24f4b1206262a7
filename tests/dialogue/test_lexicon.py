"""The lexicon compiler (dialogue.lexicon): plain phrases a clinician writes become patterns with
inflections, fillers, gaps that stop at a negation, numbers, Mandarin measure words and ASR tolerance;
`re:` stays as the escape hatch; a bad phrase is reported with its place."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dialogue.extract import Extractor, extractor
from dialogue.knowledge import PROMPTS_DIR, load_knowledge
from dialogue.lexicon import AsrTolerance, LexiconError, compile_many, compile_phrase, is_plain
from dialogue.protocols import ProtocolError


def _hits(phrases: list[str], lang: str, text: str) -> bool:
    return bool(compile_many(phrases, lang).search(text))


@pytest.mark.parametrize(
    ("phrase", "text", "hit"),
    [
        ("vomit", "she vomited twice", True),
        ("vomit", "he keeps vomiting", True),
        ("bruise", "his arm is bruised", True),
        ("worry", "she worries a lot", True),
        ("pass out", "I nearly passed out", True),
        ("pain in chest", "a pain in my chest", True),
        ("short of breath", "he's short of his breath", True),
        ("can't breathe", "i cant breathe", True),
        ("can't breathe", "I can’t breathe", True),
        ("new-born", "a newborn baby", True),
        ("chest pain", "my chestpain", False),
        ("cold", "it's a scolding", False),
        ("calf ~ sore", "my calf is sore", True),
        ("calf ~ sore", "my calf is not sore", False),  # a gap never swallows a negation
        ("took ~ #10+ ~ tablet", "she took more than thirty paracetamol tablets", True),
        ("took ~ #10+ ~ tablet", "she took 24 tablets", True),
        ("took ~ #10+ ~ tablet", "she took two paracetamol tablets", False),
        ("took # tablet", "he took 2 tablets", True),
    ],
)
def test_english_plain_phrases(phrase: str, text: str, hit: bool) -> None:
    assert _hits([phrase], "en", text) is hit


@pytest.mark.parametrize(
    ("phrase", "text", "hit"),
    [
        ("头 晕", "头有点晕", True),
        ("头 晕", "头晕", True),
        ("头 晕", "头不晕", False),
        ("胸口~疼", "胸口这两天一直疼", True),
        ("胸口~疼", "胸口，腿疼", False),  # a gap never crosses a clause
        ("吃了 #10+ 片", "吃了三十片", True),
        ("吃了 #10+ 片", "吃了两片", False),
        ("吃了 #10+ ~药", "一次吃了二十多粒安眠药", True),
        ("吐了 # 次", "吐了三次", True),
    ],
)
def test_mandarin_plain_phrases(phrase: str, text: str, hit: bool) -> None:
    assert _hits([phrase], "zh", text) is hit


def test_regex_is_the_marked_escape_hatch() -> None:
    assert _hits(["re:chest pains?"], "en", "chest pains")
    assert not is_plain("re:chest", "en") and is_plain("chest pain", "en") and is_plain("胸口~疼", "zh")
    with pytest.raises(LexiconError, match="re:"):
        compile_phrase("chest pains?", "en")
    with pytest.raises(LexiconError, match=r"findings\.cough.*bad phrase"):
        compile_many(["re:cough("], "en", where="findings.cough")
    with pytest.raises(LexiconError, match="empty"):
        compile_phrase("  ", "en")


def test_mandarin_asr_tolerance_by_toneless_pinyin() -> None:
    tol = AsrTolerance(["喘不上气", "黄痰", "胸口疼"], "zh")
    if not tol.active:
        pytest.skip("pypinyin is not installed")
    assert tol.fix("我传不上气") == "我喘不上气"
    assert tol.fix("荒谈") == "荒谈"  # two syllables are too collision-prone to rewrite
    assert tol.fix("今天天气很好") == "今天天气很好"
    assert AsrTolerance(["喘不上气"], "zh", never=["传不上气"]).fix("传不上气") == "传不上气"


def test_english_asr_tolerance_within_one_edit_of_listed_words() -> None:
    tol = AsrTolerance(["diarrhoea", "paracetamol", "seizure"], "en")
    assert tol.fix("he has diarhoea and took paracetemol") == "he has diarrhoea and took paracetamol"
    assert tol.fix("seizures") == "seizures"  # an inflection is not a slip
    assert tol.fix("his face is drooping") == "his face is drooping"


@pytest.mark.parametrize(
    ("heard", "meant"),
    [
        ("she's on war for in for her heart", "she's on warfarin for her heart"),
        ("they put me on Ella Quiss", "they put me on eliquis"),
        ("he takes river oxa ban for the clot", "he takes rivaroxaban for the clot"),
        ("I skipped my in sue lin", "I skipped my insulin"),
        ("he's on Eliquiss", "he's on eliquis"),
        # ordinary words that sound alike stay themselves
        ("he walks with a stick", "he walks with a stick"),
        ("she had a prawn and her lips swelled", "she had a prawn and her lips swelled"),
        ("what would happen if I stop", "what would happen if I stop"),
        ("the side effects of my metformin", "the side effects of my metformin"),
        ("the war for independence", "the war for independence"),
    ],
)
def test_english_names_heard_as_other_words_are_read_by_their_sound(heard: str, meant: str) -> None:
    names = ["warfarin", "eliquis", "rivaroxaban", "insulin", "heparin", "metformin", "epipen"]
    tol = AsrTolerance([], "en", names=names)
    assert tol.fix(heard) == meant


def test_the_sound_key_is_a_consonant_skeleton() -> None:
    from dialogue.lexicon import sound_key

    assert sound_key("warfarin") == sound_key("war for in") == "WRFRN"
    assert sound_key("church") == "XRX"  # "ch" is one sound, not a k and an h
    assert sound_key("Ella Quiss") == sound_key("eliquis") == "ALKS"  # a first vowel keeps one mark


def test_a_drug_name_split_by_recognition_still_says_the_blood_thinner() -> None:
    found = extractor("en").extract("she's on war for in and she banged her head on the cupboard").findings()
    assert found["anticoagulant"].present and found["head_injury"].present


def test_the_shipped_lexicons_use_the_escape_hatch_only_for_regular_expressions() -> None:
    kn = load_knowledge()
    for lang, lex in kn.lexicons.items():
        for fid, pats in lex.findings.items():
            for p in pats:
                assert p.startswith("re:") or is_plain(p, lang), (lang, fid, p)
        plain = sum(not p.startswith("re:") for pats in lex.findings.values() for p in pats)
        assert plain > 400, (lang, plain)


def test_exclusions_and_slips_in_the_extractor() -> None:
    en = extractor("en")
    assert "poisoning" not in en.extract("I touched poison ivy").findings()
    assert "poisoning" in en.extract("he drank rat poison").findings()
    assert "diarrhoea" in en.extract("she has had diarhoea since monday").findings()
    zh = extractor("zh")
    if AsrTolerance(["喘不上气"], "zh").active:
        assert "breathless" in zh.extract("我传不上气").findings()


def test_a_bad_phrase_names_its_file_and_finding(tmp_path: Path) -> None:
    dst = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, dst, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    lex = dst / "en" / "lexicon.yaml"
    text = lex.read_text(encoding="utf-8")
    lex.write_text(text.replace("exclusions:\n", 'exclusions:\n  cough: ["a cough?"]\n', 1), encoding="utf-8")
    kn = load_knowledge(dst)
    with pytest.raises(ProtocolError, match=r"en/lexicon\.yaml: exclusions\.cough.*re:"):
        Extractor(kn.lexicons["en"], "en")
