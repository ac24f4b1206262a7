"""Time and intent (dialogue.temporal): a past event, a known condition, a hypothetical or a question about
treatment is not a present red flag; an unclear time for a red flag makes it suspected, never dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialogue.extract import extractor
from dialogue.protocols import URGENCY, ProtocolError
from dialogue.temporal import TemporalReader, reader
from dialogue.triage import triage_text

EM = URGENCY["emergency"]


def _read(text: str, lang: str) -> tuple[set[str], set[str]]:
    e = extractor(lang).extract(text)
    return {f for f, m in e.findings().items() if m.present}, {m.finding for m in e.suspected}


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "my son had a fit two years ago, can epilepsy be cured?"),
        ("en", "Two years ago, he had a fit. Is epilepsy hereditary?"),
        ("en", "my daughter has epilepsy, which medicine is best for it?"),
        ("en", "which medicine is best"),
        ("en", "I touched poison ivy and now my arm itches"),
        ("en", "when I was a child I had a seizure, now I get headaches"),
        # DEV false alarms (tests/dialogue/dev_false_alarms): an age in the past is a past event
        ("en", "I had a seizure when I was a teenager, nothing since, can I still get a driving licence?"),
        ("en", "my son had a febrile convulsion when he was one, he's five now and has a cold"),
        ("zh", "癫痫能治好吗，他以前抽过一次"),
        ("zh", "他以前抽过一次，癫痫能治好吗"),
        ("zh", "用药哪个比较好"),
        ("zh", "我爸有癫痫病史，平时吃什么药比较好？"),
        ("zh", "小时候得过癫痫，现在偶尔头疼"),
    ],
)
def test_history_and_treatment_questions_are_not_present_red_flags(lang: str, text: str) -> None:
    r = triage_text(text, lang)
    assert not r.red_flags, r.red_flags
    assert URGENCY[r.disposition] < EM, r.disposition
    _, suspected = _read(text, lang)
    assert not suspected & {"seizure", "overdose", "poisoning"}, suspected


@pytest.mark.parametrize(
    ("lang", "text", "flag"),
    [
        ("en", "my 15 year old took more than thirty paracetamol tablets", "overdose_or_poisoning"),
        (
            "en",
            "patient reports she swallowed about 40 tablets of her mother's sleeping pills",
            "overdose_or_poisoning",
        ),
        ("en", "he's having a fit right now", "collapse_or_unconscious"),
        ("en", "he had epilepsy as a child and now he's fitting again", "collapse_or_unconscious"),
        ("en", "two hours ago she had a seizure", "collapse_or_unconscious"),
        ("en", "he had epilepsy as a child, he's fitting", "collapse_or_unconscious"),
        ("en", "she collapsed in the kitchen", "collapse_or_unconscious"),
        ("en", "my baby had a fit when she was 3 weeks old, today", "collapse_or_unconscious"),
        ("zh", "孩子吃了一把奶奶的降压药", "overdose_or_poisoning"),
        ("zh", "我女儿一次吃了三十片安眠药", "overdose_or_poisoning"),
        ("zh", "他刚才抽搐了，现在叫不醒", "collapse_or_unconscious"),
        ("zh", "他以前有癫痫，今天又抽了", "collapse_or_unconscious"),
    ],
)
def test_present_events_still_raise_red_flags(lang: str, text: str, flag: str) -> None:
    assert flag in triage_text(text, lang).red_flags


@pytest.mark.parametrize(
    ("lang", "text", "fid"),
    [
        ("en", "what should I do if he has a seizure", "seizure"),
        ("en", "he has had a seizure before", "seizure"),
        ("en", "what can I give him for the chest pain and sweating", None),  # a symptom in a question: still present
        ("zh", "如果他抽搐了怎么办", "seizure"),
        ("zh", "他抽搐过", "seizure"),
        # a past earlier in the sentence: the narrative may go on in the past, or be happening again
        ("zh", "之前因为受了刺激，出现了口吐白沫，四肢抽搐", "seizure"),
        ("en", "he had epilepsy as a child, he had a fit", "seizure"),
        ("en", "I fainted once when I had a blood test, will that happen again?", "unconscious"),
    ],
)
def test_a_red_flag_of_unclear_time_is_suspected_not_dropped(lang: str, text: str, fid: str | None) -> None:
    present, suspected = _read(text, lang)
    if fid is None:
        assert "chest_pain" in present or "chest_pain" in suspected
        return
    assert fid in suspected, (present, suspected)
    assert fid not in present


def test_tense_is_tagged_on_each_mention() -> None:
    e = extractor("en").extract("my son had a fit two years ago, and today he has a fever")
    by = {m.finding: m for m in e.mentions}
    assert by["seizure"].tense == "past"
    assert by["fever"].tense == "present"
    assert "fever" in e.findings() and "seizure" not in e.findings()
    assert by["child"].tense == "present"  # who the patient is does not depend on the tense


def test_negation_still_wins_in_a_present_clause() -> None:
    present, suspected = _read("no seizures since he was a child, he has a cough now", "en")
    assert "seizure" not in present and "seizure" not in suspected
    assert "cough" in present


def test_marker_classes_are_known(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="unknown class"):
        TemporalReader({"markers": {"sometimes": ["often"]}}, "en", where="x.yaml")
    with pytest.raises(ProtocolError, match="re:"):
        TemporalReader({"markers": {"past": ["years (ago)?"]}}, "en", where="x.yaml")
    bad = tmp_path / "en"
    bad.mkdir()
    (bad / "time_intent.yaml").write_text("markers: [oops\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        reader.__wrapped__("en", str(tmp_path))


@pytest.mark.parametrize(
    ("lang", "text"),
    [
        ("en", "my dad has dementia and gets confused in the evenings, it's been like that for a year"),
        ("en", "she gets muddled at night, she's always like that"),
        ("zh", "我爸老年痴呆，一到晚上就糊涂，一年多了都这样"),
    ],
)
def test_a_long_standing_state_is_not_a_new_red_flag_but_is_asked(lang: str, text: str) -> None:
    """'It's been like that for a year' (in the clause or the one after): new confusion is only suspected,
    the bot asks whether it is new; said without it, it is a finding."""
    present, suspected = _read(text, lang)
    assert "confusion" in suspected and "confusion" not in present, (present, suspected)
    fresh = {"en": "my dad has dementia and he's suddenly confused tonight", "zh": "我爸今天突然糊涂了"}[lang]
    assert "confusion" in _read(fresh, lang)[0]
    since = {"en": "he's confused and muddled, it's been like this since this morning",
             "zh": "我爸说话颠三倒四的，从今天早上开始一直这样"}[lang]  # fmt: skip
    assert "confusion" in _read(since, lang)[0], _read(since, lang)


@pytest.mark.parametrize(
    ("lang", "text", "fid"),
    [
        ("en", "on the telly last night a man collapsed with a heart attack, what are the signs?", "unconscious"),
        ("en", "I read that a stiff neck with a headache can be meningitis, my sister's worried", "stiff_neck"),
        ("zh", "昨晚看电视养生节目讲主动脉夹层，说胸背撕裂样疼，吓死我了", "tearing_pain"),
        ("zh", "听人说血糖太高会昏迷，可吓人了", "unconscious"),
    ],
)
def test_what_a_programme_or_hearsay_told_is_no_present_red_flag(lang: str, text: str, fid: str) -> None:
    """Someone else's story (a programme, the news, hearsay) to the end of its sentence: never an emergency
    by itself; a red-flag finding in it is at most confirmed."""
    present, _ = _read(text, lang)
    assert fid not in present, present
    assert URGENCY[triage_text(text, lang).disposition] < EM


@pytest.mark.parametrize(
    ("lang", "text", "fid"),
    [
        ("en", "I saw a programme about strokes, and now my dad's face has dropped on one side", "face_droop"),
        ("zh", "电视上讲过中风，我爸刚才突然嘴歪了", "face_droop"),
    ],
)
def test_a_programme_mentioned_does_not_hide_what_happens_now(lang: str, text: str, fid: str) -> None:
    present, _ = _read(text, lang)
    assert fid in present, present
    assert URGENCY[triage_text(text, lang).disposition] >= EM
