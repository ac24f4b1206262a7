"""How a caller answered, both languages: yes / no / "I don't know" with fillers, and intents."""

from __future__ import annotations

import pytest

from dialogue.answers import answer_reader

ANSWERS = [
    ("zh", "对", "yes"),
    ("zh", "是的", "yes"),
    ("zh", "嗯", "yes"),
    ("zh", "有", "yes"),
    ("zh", "有一点", "yes"),
    ("zh", "嗯，有点疼", "yes"),
    ("zh", "没有", "no"),
    ("zh", "没", "no"),
    ("zh", "不是", "no"),
    ("zh", "嗯，没有", "no"),
    ("zh", "不会", "no"),
    ("zh", "不知道", "unknown"),
    ("zh", "不清楚", "unknown"),
    ("en", "yes", "yes"),
    ("en", "yeah", "yes"),
    ("en", "yep, it does", "yes"),
    ("en", "uh-huh", "yes"),
    ("en", "I think so", "yes"),
    ("en", "no", "no"),
    ("en", "nope", "no"),
    ("en", "not really", "no"),
    ("en", "I don't think so", "no"),
    ("en", "um, no", "no"),
    ("en", "I don't know", "unknown"),
    ("en", "not sure", "unknown"),
]


@pytest.mark.parametrize(("lang", "text", "answer"), ANSWERS)
def test_yes_no_answers(lang: str, text: str, answer: str) -> None:
    assert answer_reader(lang).answer(text) == answer


@pytest.mark.parametrize(
    ("lang", "intent", "text"),
    [
        ("en", "repeat", "pardon?"),
        ("en", "repeat", "sorry, can you say that again"),
        ("en", "transfer", "I want a nurse"),
        ("en", "transfer", "can I talk to a real person"),
        ("en", "correction", "no, I mean three days"),
        ("zh", "repeat", "请再说一遍"),
        ("zh", "repeat", "没听清"),
        ("zh", "transfer", "转人工"),
        ("zh", "transfer", "我要找护士"),
        ("zh", "correction", "不对，我是说三天"),
    ],
)
def test_intents(lang: str, intent: str, text: str) -> None:
    assert answer_reader(lang).intent(intent, text)
