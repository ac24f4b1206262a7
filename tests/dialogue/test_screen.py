"""The emergency screen (issue 9 §1): before a disposition below `emergency` every triage call asks about
the life threats the caller's words did not settle, bundled, each "yes" followed by the settling question,
scoped by age, complaint and pregnancy, with the reason for each question in the call's result."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dialogue.knowledge import PROMPTS_DIR
from dialogue.protocols import ProtocolError
from dialogue.screen import load_screen, screen_data
from tests.dialogue.screen_driver import Call

CORE = {"en": "chest pain", "zh": "胸痛"}
NEURO = {"en": "fainting", "zh": "晕倒"}


def _screen_questions(c: Call) -> list[str]:
    qs = {r["asked_turn"]: r for r in c.d.result().to_json()["screen"]}
    return [str(r["item"]) for r in qs.values()]


@pytest.mark.parametrize(
    ("lang", "consent", "opening", "no"),
    [("en", "yes", "I've had a sore throat for two days", "no"), ("zh", "好的", "我嗓子疼两天了", "没有")],
)
async def test_screen_is_asked_on_a_non_emergency_complaint_before_the_disposition(
    lang: str, consent: str, opening: str, no: str
) -> None:
    c = Call(lang)
    await c.open()
    await c.say(consent)
    await c.say(opening)
    asked = await c.answer_until_done(no)
    r = c.d.result().to_json()
    assert r["disposition"] == "self_care" and r["end_reason"] == "completed"
    # the protocol's own questions come first, then the bundled screen, then the advice
    core = next(i for i, q in enumerate(asked) if CORE[lang] in q)
    neuro = next(i for i, q in enumerate(asked) if NEURO[lang] in q)
    assert 0 < core < neuro == len(asked) - 1
    items = {x["item"] for x in r["screen"]}
    assert {"chest", "stroke", "collapse", "bleeding"} <= items
    assert "self_harm" not in items and not any(i.startswith(("infant", "pregnancy")) for i in items)
    for rec in r["screen"]:
        assert rec["answer"] == "no" and rec["asked_turn"] < rec["answer_turn"]
        assert "not yet excluded" in rec["reason"] and "self_care" in rec["reason"]
    # a bundled "no" is written down as an absence the record can show
    assert {f["id"]: f["present"] for f in r["findings"] if f["source"] == "screen"}["face_droop"] is False
    assert r["screen_questions"] == 2 and r["questions_total"] == len(asked) + 2  # + consent, complaint


async def test_the_core_screen_is_one_bundled_question() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a rash on my arm for a week, it's itchy")
    asked = await c.answer_until_done("no")
    bundle = next(q for q in asked if "chest pain" in q)
    assert "breathing" in bundle and "face or arm" in bundle and bundle.startswith("Any ")


async def test_items_already_settled_by_the_caller_are_skipped() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a sore throat for two days. No chest pain, no trouble breathing.")
    asked = await c.answer_until_done("no")
    bundle = next(q for q in asked if "face" in q)
    assert "chest" not in bundle and "breathing" not in bundle
    items = [x["item"] for x in c.d.result().to_json()["screen"]]
    assert "chest" not in items and "breathing" not in items and "stroke" in items


@pytest.mark.parametrize(
    ("lang", "consent", "opening", "which", "yes"),
    [
        ("en", "yes", "I've had a sore throat for two days", "my arm, it feels weak", "yes"),
        ("zh", "好的", "我嗓子疼两天了", "是手", "是的"),
    ],
)
async def test_yes_is_followed_by_which_then_the_settling_question_then_escalation(
    lang: str, consent: str, opening: str, which: str, yes: str
) -> None:
    c = Call(lang)
    await c.open()
    await c.say(consent)
    await c.say(opening)
    no = {"en": "no", "zh": "没有"}[lang]
    while CORE[lang] not in c.last_question():
        await c.say(no)
    await c.say(yes)  # to the bundle: which one?
    assert c.d.check.kind == "which"
    await c.say(which)
    follow = c.last_question()
    assert c.d.check.kind == "follow" and c.d.check.items == ("stroke",)
    assert not c.escalated()
    out = await c.say(yes)  # new, on one side
    assert c.escalated(), follow
    r = c.d.result().to_json()
    assert "stroke_signs" in r["red_flags"] and r["disposition"] == "emergency_ambulance"
    answers = [(x["item"], x["question"], x["answer"]) for x in r["screen"]]
    assert ("stroke", "which", "yes (named)") in answers and ("stroke", "follow", "yes") in answers
    assert ("chest", "which", "no (not named)") in answers
    assert any(str(o).startswith(("What you describe", "您说的情况")) for o in out)


async def test_not_sure_to_the_settling_question_counts_as_present() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a sore throat for two days")
    while "chest pain" not in c.last_question():
        await c.say("no")
    await c.say("yes")
    await c.say("the chest")
    assert "spread" in c.last_question()
    await c.say("I'm not sure")
    assert c.escalated()
    assert "cardiac_chest_pain" in c.d.result().to_json()["red_flags"]
    rec = [x for x in c.d.result().to_json()["screen"] if x["question"] == "follow"][-1]
    assert rec["answer"] == "not sure: treated as present"


async def test_a_no_in_the_caller_s_own_words_is_taken_item_by_item() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a sore throat for two days")
    while "chest pain" not in c.last_question():
        await c.say("no")
    await c.say("no chest pain, but I'm a bit short of breath")
    # breathing named present: what settles it (how bad) is asked next, by its protocol; chest recorded absent
    assert "breath" in c.last_question()
    await c.answer_until_done("no")
    r = c.d.result().to_json()
    assert not r["red_flags"]
    present = {f["id"]: f["present"] for f in r["findings"]}
    assert present["chest_pain"] is False and present["breathless"] is True and present["severe_breathless"] is False
    assert ("chest", "no") in {(x["item"], x["answer"]) for x in r["screen"]}


async def test_no_but_something_else_is_followed_up_not_recorded_absent() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a sore throat for two days")
    while "chest pain" not in c.last_question():
        await c.say("no")
    await c.say("no, but my arm has gone numb")
    assert c.d.check.kind == "follow" and c.d.check.items == ("stroke",)
    assert not c.d.facts.known("one_sided_numbness")
    await c.say("yes, just the left side, since this morning")
    assert c.escalated() and "stroke_signs" in c.d.result().to_json()["red_flags"]


@pytest.mark.parametrize(
    ("lang", "consent", "opening", "no", "infant_word", "adult_word"),
    [
        ("en", "yes", "my baby has had a runny nose since yesterday", "no", "baby", "chest pain"),
        ("zh", "好的", "我家宝宝从昨天开始流鼻涕", "没有", "宝宝", "胸痛"),
    ],
)
async def test_babies_get_the_infant_screen_not_the_adult_one(
    lang: str, consent: str, opening: str, no: str, infant_word: str, adult_word: str
) -> None:
    c = Call(lang)
    await c.open()
    await c.say(consent)
    await c.say(opening)
    asked = await c.answer_until_done(no)
    items = {x["item"] for x in c.d.result().to_json()["screen"]}
    assert {"infant_alert", "infant_feeding", "infant_rash", "infant_age"} <= items
    assert "chest" not in items and "stroke" not in items and not any(adult_word in q for q in asked)
    bundle = next(q for q in asked if infant_word in q and ("floppy" in q or "软绵绵" in q))
    assert "feeding" in bundle or "吃奶" in bundle


async def test_an_adult_who_mentions_a_child_is_still_screened_as_an_adult() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("My son drove me in, I've had a sore throat for two days")
    await c.answer_until_done("no")
    items = {x["item"] for x in c.d.result().to_json()["screen"]}
    assert {"chest", "stroke"} <= items  # "my son" is who is calling about, not the patient's age
    child = Call("en")
    await child.open()
    await child.say("yes")
    await child.say("my 8 year old son has had a sore throat for two days")
    await child.answer_until_done("no")
    items = {x["item"] for x in child.d.result().to_json()["screen"]}
    assert "stroke" not in items and "chest" not in items and "collapse" in items


async def test_a_young_baby_is_asked_about_fever_and_a_yes_escalates() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("my baby has had a runny nose since yesterday")
    read_back = False
    for _ in range(20):
        q = c.last_question()
        if "temperature of 38" in q:
            break
        assert not c.ended(), q
        if "months old" in q:
            await c.say("six weeks")
        elif "Is that right" in q:
            read_back = "6 weeks old" in q  # a baby's age is read back (issue 12)
            await c.say("yes")
        elif "fever" in q:
            await c.say("I don't know")  # the protocol's own fever question leaves it open
        else:
            await c.say("no")
    assert read_back
    await c.say("yes")
    assert c.escalated() and "infant_fever" in c.d.result().to_json()["red_flags"]
    assert ("infant_fever", "yes") in {(x["item"], x["answer"]) for x in c.d.result().to_json()["screen"]}


@pytest.mark.parametrize(
    ("lang", "consent", "opening", "no", "word"),
    [
        ("en", "yes", "I'm pregnant and I've had a headache since this morning", "no", "moving less"),
        ("zh", "好的", "我怀孕了，今天早上开始头疼", "没有", "胎动"),
    ],
)
async def test_pregnancy_screen_only_for_pregnancy(lang: str, consent: str, opening: str, no: str, word: str) -> None:
    c = Call(lang)
    await c.open()
    await c.say(consent)
    await c.say(opening)
    asked = await c.answer_until_done(no)
    assert any(word in q for q in asked)
    # (bleeding was settled by the headache protocol's own question in pregnancy)
    assert {"pregnancy_pain", "pregnancy_movements"} <= {x["item"] for x in c.d.result().to_json()["screen"]}

    other = Call(lang)
    await other.open()
    await other.say(consent)
    await other.say({"en": "I've had a headache since this morning", "zh": "我今天早上开始头疼"}[lang])
    asked = await other.answer_until_done(no)
    assert not any(word in q for q in asked)


async def test_self_harm_is_screened_for_mental_health_not_for_a_sore_throat() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've been feeling really low and anxious for weeks")
    asked = await c.answer_until_done("no")
    assert any("harming yourself" in q for q in asked)
    sore = Call("en")
    await sore.open()
    await sore.say("yes")
    await sore.say("I've had a sore throat for two days")
    assert not any("harming yourself" in q for q in await sore.answer_until_done("no"))


async def test_self_harm_yes_escalates_without_making_the_caller_justify_it() -> None:
    c = Call("zh")
    await c.open()
    await c.say("好的")
    await c.say("最近心情很低落，睡不着")
    while "伤害自己" not in c.last_question():
        assert not c.ended()
        await c.say("没有")
    await c.say("有")
    assert c.escalated() and "suicide_risk" in c.d.result().to_json()["red_flags"]


async def test_an_unrecognised_complaint_still_gets_the_full_screen() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    for _ in range(3):
        await c.say("I just don't feel like myself")
        if "Any " in c.last_question():
            break
    asked = await c.answer_until_done("no")
    items = {x["item"] for x in c.d.result().to_json()["screen"]}
    assert {"chest", "breathing", "stroke", "collapse", "bleeding", "self_harm"} <= items, asked
    assert c.d.result().to_json()["disposition"] != "self_care"


async def test_no_screen_when_the_protocol_already_sends_to_emergency() -> None:
    c = Call("en")
    await c.open()
    await c.say("yes")
    await c.say("I've had a sore throat for two days")
    await c.say("yes, I can't swallow my own saliva")  # the protocol's emergency rule
    await c.answer_until_done("no")
    r = c.d.result().to_json()
    assert r["disposition"] == "emergency" and r["screen"] == []


def test_every_screen_item_has_wording_in_both_languages() -> None:
    data = screen_data()
    for lang in ("zh", "en"):
        for item in data.items.values():
            t = data.text[lang].items[item.id]
            assert t.question.strip()
            assert not item.follow_up or t.follow_up.strip()


def test_a_malformed_screen_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    root = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, root)
    path = root / "screens" / "emergency.yaml"
    broken = path.read_text(encoding="utf-8").replace("general: chest_pain", "general: chest_pian")
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ProtocolError, match=r"emergency\.yaml.*chest_pian"):
        load_screen(root)


@pytest.mark.parametrize(
    ("lang", "opening", "answers", "flag"),
    [
        # openings that say nothing the understanding can read as a red flag: the screen asks, the caller answers
        # truthfully. (Issue 9's own misses, "my mum's face has dropped on one side…" and "I keep thinking about
        # ending my life…", are now raised by the semantic layer from the words alone; test_semantic covers them.)
        ("en", "my mum seems a bit off this afternoon",
         {"face or arm": "yes, her face", "new, and on one side": "yes"}, "stroke_signs"),
        ("en", "I've been feeling really down lately",
         {"harming yourself": "yes"}, "suicide_risk"),
        ("zh", "我爸今天有点不对劲", {"脸歪": "有，他的嘴有点歪", "一侧": "是的"}, "stroke_signs"),
    ],
)
async def test_the_screen_catches_emergencies_the_words_did_not_raise(
    lang: str, opening: str, answers: dict[str, str], flag: str
) -> None:
    c = Call(lang)
    await c.open()
    await c.say({"en": "yes", "zh": "好的"}[lang])
    text = opening
    for _ in range(25):
        if c.escalated() or c.ended():
            break
        await c.say(text)
        q = c.last_question()
        text = next((a for k, a in answers.items() if k in q), None) or (
            opening if "didn't catch" in q or "没听清" in q else {"en": "no", "zh": "没有"}[lang]
        )
    assert c.escalated(), c.text(c.log)
    assert flag in c.d.result().to_json()["red_flags"]
    assert any(x.answer.startswith("yes") for x in c.d.result().screen)  # the screen's question found it


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_fixed_phrases_for_warm_start_include_the_whole_bundles(lang: str) -> None:
    from dialogue.screen import fixed_phrases

    phrases = fixed_phrases(lang)
    core = {"en": "Any chest pain or pressure, trouble breathing, or weakness in the face or arm, or trouble speaking?",
            "zh": "有没有胸痛或者胸口发闷、喘不上气，或者脸歪、胳膊没力气或者说话不清楚？"}[lang]
    assert core in phrases and len(phrases) == len(set(phrases)) > 20


async def test_keypad_answers_work_for_the_screen() -> None:
    c = Call("zh")
    await c.open()
    await c.say("好的")
    await c.say("我嗓子疼两天了")
    while "胸痛" not in c.last_question():
        await c.say("没有")
    [o async for o in c.d.on_dtmf("2")]  # 2 = no
    assert {x["item"]: x["answer"] for x in c.d.result().to_json()["screen"]}["chest"] == "no"
    out = [o async for o in c.d.on_dtmf("1")]  # 1 = yes, to the next bundle: which one?
    assert any("是哪一种" in o for o in out if isinstance(o, str))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_present_finding_that_raised_no_red_flag_does_not_settle_its_item(lang: str) -> None:
    """Sweating alone raises no red flag, so it says nothing about chest pain: the chest item is still asked
    (it used to count as settled by any present finding, and the screen skipped chest pain)."""
    from dialogue.facts import Facts
    from dialogue.screen import Screen

    facts = Facts()
    facts.set_finding("sweating", True, 1, "sweaty", "sweaty")
    ask = Screen(lang).next(facts, ["fever_adult"], "consultation", 2)
    assert ask is not None and "chest" in ask.items
    facts.set_finding("chest_pain", False, 2, "no", "no")
    ask = Screen(lang).next(facts, ["fever_adult"], "consultation", 3)
    assert ask is not None and "chest" not in ask.items  # denied: settled
