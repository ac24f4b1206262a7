"""What a reply's record says: the dialogue's pieces joined as the language writes them."""

from __future__ import annotations

from voice.languages import languages
from voice.reply import Reply


def _text(parts: list[str], language: str) -> str:
    reply = Reply("response")
    for part in parts:
        reply.add_text(part, languages[language])
    return reply.text


def test_sentences_said_one_after_another_are_spaced_in_english() -> None:
    assert _text(["Please unlock the door.", "I can also put you through to a nurse."], "en") == (
        "Please unlock the door. I can also put you through to a nurse.")
    assert _text(["Are you still there?", "A nurse has been alerted."], "en") == (
        "Are you still there? A nurse has been alerted.")


def test_streamed_pieces_keep_their_own_spacing() -> None:
    assert _text(["How", " long", " have you had it", "?"], "en") == "How long have you had it?"
    assert _text(["It is 38.5", " degrees."], "en") == "It is 38.5 degrees."
    assert _text(["It is 38", ".", "5 degrees."], "en") == "It is 38.5 degrees."


def test_chinese_sentences_are_not_spaced() -> None:
    assert _text(["请马上拨打120。", "我会通知护士。"], "zh") == "请马上拨打120。我会通知护士。"


def test_the_voice_gets_the_sentences_as_the_record_joins_them() -> None:
    # "now.Please" was one clause: the voice ran the words together, and the warm-up had never rendered it.
    from tests.voice.fakes import FakeSynthesizer, Scenario, ScriptedDialogue, Speech, run_scenario
    from tests.voice.virtual_time import run_virtual

    voice = FakeSynthesizer()
    d = ScriptedDialogue({"No.": ["Please act on that advice now.", "Please do that now."]})
    run_virtual(run_scenario(Scenario([Speech(0.5, 1.0, 150.0)], d, {150.0: "No."}, synthesizer=voice, duration_s=6)))
    assert voice.said == ["Please act on that advice now.", "Please do that now."]
