"""Adding a language touches one pack and prompts/<code>/: a third pack (Cantonese, reading Mandarin's
rules) registered for the test, with its prompts/yue/ a copy of prompts/zh/ in which a few words are
Cantonese, goes through every path that used to branch on "zh"/"en": the CLI's --lang, the dialogue's
data, the lexicon compiler, the screen's wording, tag names in exports, the dashboard's labels, QA
labels and the simulated caller. Where the language has data of its own, that is what is used; where it
has none (console strings, tag names), Mandarin's (its `rules_from`), never English's."""

from __future__ import annotations

import dataclasses
import shutil
import wave
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import dialogue.knowledge
import web.console.dashboard as dash
from dialogue.knowledge import PROMPTS_DIR, Knowledge, load_knowledge
from dialogue.lexicon import AsrTolerance, compile_many, compile_phrase
from voice.languages import LanguagePack, languages


@pytest.fixture
def yue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LanguagePack, Knowledge]:
    root = tmp_path / "prompts"
    root.mkdir()
    for entry in PROMPTS_DIR.iterdir():
        if entry.name not in ("__pycache__", "yue"):
            (root / entry.name).symlink_to(entry)
    shutil.copytree(PROMPTS_DIR / "zh", root / "yue")
    for name, old, new in [("screen.yaml", "有没有", "有冇"), ("protocols.yaml", "name: 胸痛", "name: 心口痛"),
                           ("dialogue.yaml", "cardiology: 心血管内科", "cardiology: 心脏科")]:
        path = root / "yue" / name
        text = path.read_text(encoding="utf-8")
        assert old in text, (name, old)
        path.write_text(text.replace(old, new), encoding="utf-8")
    pack = dataclasses.replace(languages["zh"], code="yue", name="Cantonese", asr_code="yue", emergency_number="999",
                               rules_from="zh", prompts=root)
    # What adding `yue.PACK` to `_PACKS` in voice/languages/__init__.py does, for this test only.
    monkeypatch.setitem(languages._packs, "yue", pack)
    kn = load_knowledge(root)
    monkeypatch.setattr(dialogue.knowledge, "knowledge", lambda root=None: kn)  # what records/tags.py reads
    monkeypatch.setattr(dash, "knowledge", lambda root=None: kn)
    return pack, kn


def test_the_dialogues_data_is_loaded_for_every_registered_language(yue: tuple[LanguagePack, Knowledge]) -> None:
    _, kn = yue
    assert {"zh", "en", "yue"} <= set(kn.lexicons) and "yue" in kn.phrases and "yue" in kn.protocol_text
    assert kn.protocol_text["yue"]["chest_pain"].name == "心口痛"  # its own, not a copy of Mandarin's at run time


def test_the_cli_takes_any_registered_language(yue: tuple[LanguagePack, Knowledge], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import app

    seen: list[str] = []

    def triage_text(text: str, lang: str) -> Any:
        seen.append(lang)
        raise SystemExit(0)  # what triage does with the language is the dialogue's (tests/dialogue)

    monkeypatch.setattr("dialogue.triage.triage_text", triage_text)
    runner = CliRunner()
    assert runner.invoke(app, ["triage", "--lang", "yue", "心口痛"]).exit_code == 0 and seen == ["yue"]
    refused = runner.invoke(app, ["triage", "--lang", "fr", "hello"])
    assert refused.exit_code == 2 and "zh, en, yue" in refused.output
    wav = tmp_path / "a.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\0" * 160)
    # past the language check: it goes on to dial the (absent) server
    called = runner.invoke(app, ["call", "--audio", str(wav), "--lang", "yue", "--url", "ws://127.0.0.1:9/ws/call"])
    assert called.exit_code == 2 and "cannot reach CareCall" in called.output


def test_the_lexicon_compiles_with_the_rules_the_language_reads_with(yue: tuple[LanguagePack, Knowledge]) -> None:
    # a Mandarin-only phrase (a space is a short gap, `#` a Chinese numeral): English's grammar refuses it
    for phrase, text in [("头 晕", "我头有点晕"), ("吃了 #10+ ~ 片", "他吃了三十多片药")]:
        assert compile_many([phrase], "yue").search(text), phrase
        assert compile_phrase(phrase, "yue") == compile_phrase(phrase, "zh")
    assert compile_many(["胸口~疼"], "yue").pattern == compile_many(["胸口~疼"], "zh").pattern
    assert AsrTolerance(["喘不上气"], "yue").fix("传不上气") == AsrTolerance(["喘不上气"], "zh").fix("传不上气")


def test_the_screen_says_the_languages_own_wording(yue: tuple[LanguagePack, Knowledge]) -> None:
    from dialogue.facts import Facts
    from dialogue.screen import Screen, fixed_phrases, load_screen

    _, kn = yue
    data = load_screen(yue[0].prompts, kn)
    facts = Facts("yue")
    screen = Screen("yue", data)
    ask = screen.next(facts, ["fever_adult"], "consultation", 1)
    assert ask is not None and ask.text.startswith("有冇") and "有没有" not in ask.text
    mandarin = fixed_phrases("zh", data)
    assert fixed_phrases("yue", data) == [p.replace("有没有", "有冇") for p in mandarin] != mandarin
    # "which one?" answered with a key word inside unspaced text (after a Latin word, as callers mix them):
    # it names the item, as in Mandarin (English's rule wants a word start)
    assert screen.take(ask, "yes", {}, "有", 2, facts)
    which = screen.next(facts, ["fever_adult"], "consultation", 3)
    assert which is not None and which.kind == "which"
    assert screen.take(which, None, {}, "做完CT胸口还是闷", 4, facts)
    assert [r["answer"] for r in screen.records if r["item"] == "chest"][-1].startswith("yes")


def test_tags_and_exports_show_the_languages_names_or_mandarins(yue: tuple[LanguagePack, Knowledge]) -> None:
    from records.exports import fhir_tags, tags_of
    from records.models import Call, CallTag
    from records.tags import describe

    complaint, outcome = describe("complaint:chest_pain"), describe("outcome:transferred")
    assert complaint.name("yue") == "心口痛"  # its own protocols' name
    assert outcome.name("yue") == outcome.name("zh") != outcome.name("en")  # tags.yaml has no yue: Mandarin's
    call = Call(id="c1", language="yue", tags=[CallTag(tag="complaint:chest_pain", kind="complaint"),
                                               CallTag(tag="outcome:transferred", kind="outcome")])
    assert [t["display"] for t in fhir_tags(call, "yue")] == ["心口痛", outcome.name("zh")]
    assert {"zh", "en", "yue"} <= set(tags_of(call)[0])


def test_the_dashboard_and_qa_labels_read_the_language_then_mandarin(yue: tuple[LanguagePack, Knowledge]) -> None:
    from records.qa.config import qa_config

    _, kn = yue
    flag = kn.red_flags[0].id
    figures: dict[str, Any] = {
        "calls_by_channel": {"sip": 1}, "calls_by_mode": {"triage": 1}, "dispositions": {"emergency": 1},
        "departments": {"cardiology": 1}, "red_flags": {flag: 1}, "followup": {"problems": {"wound": 1}},
        "service": {"qa_checks": {"consent": 1.0}},
    }  # fmt: skip
    assert dash.page_language("yue") == "yue" and dash.page_language("fr") == "en"
    names = dash.labels("yue", figures)
    zh = dash.labels("zh", figures)
    assert names["ui"] == dash.UI["zh"]
    assert names["channels"] == zh["channels"] != dash.labels("en", figures)["channels"]
    assert names["departments"] == {"cardiology": "心脏科"}  # the language's own phrases
    assert names["problems"] == zh["problems"] and names["red_flags"] == zh["red_flags"]
    assert names["qa_checks"] == zh["qa_checks"] == {"consent": qa_config().label("consent", "zh")}
    assert dash.switch_language("yue") == "en" and dash.switch_language("en") == "zh"


def test_the_simulated_caller_speaks_the_close_language(yue: tuple[LanguagePack, Knowledge]) -> None:
    from dialogue.evaluation.caller import say_number

    assert say_number("temp_c", 38.5, "yue") == say_number("temp_c", 38.5, "zh") == "三十八度五"
