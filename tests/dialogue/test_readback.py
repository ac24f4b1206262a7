"""Read-back of what matters (issue 12): critical numbers, a caller's denial of a red-flag finding and words
the recogniser was unsure of are confirmed in one short question before the triage acts on them; never
once the call is escalated."""

from __future__ import annotations

import pytest

from tests.dialogue.screen_driver import Call


async def _start(lang: str, opening: str, uncertain: tuple[str, ...] = ()) -> Call:
    c = Call(lang)
    await c.open()
    await c.say({"en": "yes", "zh": "好的"}[lang])
    await c.say(opening, uncertain)
    return c


async def test_a_temperature_is_read_back_and_kept_on_yes() -> None:
    c = await _start("en", "I've had a cough and a fever of 38.5 since yesterday")
    assert c.last_question() == "I heard a temperature of 38.5 degrees. Is that right?"
    await c.say("yes")
    assert c.d.facts.num("temp_c") == 38.5 and "temperature" not in c.last_question()
    rb = c.d.result().to_json()["readbacks"]
    q = "I heard a temperature of 38.5 degrees. Is that right?"
    assert rb == [{"kind": "number", "what": "temp_c", "question": q,
                   "asked_turn": 2, "answer": "yes", "answer_turn": 3, "outcome": "kept"}]


async def test_a_wrong_number_is_asked_again_and_the_new_one_taken() -> None:
    c = await _start("en", "I've had a cough and a fever of 38.5 since yesterday")
    await c.say("no")
    assert c.last_question() == "Sorry, what was the number again?" and c.d.facts.num("temp_c") is None
    await c.say("39.5")
    assert c.d.facts.num("temp_c") == 39.5
    assert "Is that right" not in c.last_question()  # the caller's repeat is not read back again


async def test_a_corrected_number_in_the_answer_wins() -> None:
    c = await _start("en", "I've had a cough and a fever of 38.5 since yesterday")
    await c.say("no, it was 39.5")
    assert c.d.facts.num("temp_c") == 39.5 and "Is that right" not in c.last_question()


@pytest.mark.parametrize(
    ("lang", "opening", "question"),
    [
        ("zh", "宝宝五个月大，咳嗽两天了", "我听到的是宝宝5个月大，对吗？"),
        ("en", "my baby is five months old and has had a cough for two days",
         "I heard the baby is 5 months old. Is that right?"),
        ("en", "I'm 30 weeks pregnant and I've had a headache since this morning",
         "I heard 30 weeks pregnant. Is that right?"),
        ("zh", "我有糖尿病，血糖22，口很渴", "我听到的是血糖22，对吗？"),
    ],
)
async def test_critical_numbers_are_read_back_in_the_caller_s_language(lang: str, opening: str, question: str) -> None:
    c = await _start(lang, opening)
    assert c.last_question() == question


async def test_an_adult_s_age_is_not_read_back() -> None:
    c = await _start("en", "I'm 45 and I've had a sore throat for two days")
    assert "Is that right" not in c.last_question()


async def test_never_read_back_once_escalated() -> None:
    c = await _start("en", "my 6 week old baby has a fever of 38.5")
    assert c.escalated() and "infant_fever" in c.d.result().to_json()["red_flags"]
    await c.say("no", ("no",))  # the transfer offer, heard with an unsure word
    assert c.d.result().to_json()["readbacks"] == []


async def test_a_denied_red_flag_finding_is_read_back_as_a_plain_either_or() -> None:
    c = await _start("en", "I've had chest pain since this morning, but no sweating")
    assert c.last_question() == "Just to be sure: there is sweating or a cold sweat, or not?"
    await c.say("no")
    assert not c.escalated() and c.d.facts.known("sweating") and not c.d.facts.present("sweating")
    assert c.d.result().to_json()["readbacks"][0]["outcome"] == "kept"


async def test_a_denial_that_was_heard_wrongly_escalates() -> None:
    c = await _start("zh", "我今天早上开始胸口疼，没有出汗")
    assert c.last_question() == "再确认一下：在出汗或者出冷汗，是不是？"
    await c.say("是")
    assert c.escalated() and "cardiac_chest_pain" in c.d.result().to_json()["red_flags"]


async def test_unsure_about_a_red_flag_denial_counts_as_present() -> None:
    c = await _start("en", "I've had chest pain since this morning, but no sweating")
    await c.say("I don't know")
    assert c.escalated()


@pytest.mark.parametrize(("lang", "no", "yes"), [("en", "no", "yes"), ("zh", "没有", "有")])
async def test_an_unsure_short_answer_is_read_back_and_asked_again_if_wrong(lang: str, no: str, yes: str) -> None:
    c = await _start(lang, {"en": "I've had a sore throat for two days", "zh": "我嗓子疼两天了"}[lang])
    saliva = c.last_question()
    await c.say(no, (no,))  # the recogniser was unsure of the one word that answers
    assert c.last_question() == {"en": 'I heard: "no". Is that right?', "zh": "我听到的是：“没有”，对吗？"}[lang]
    await c.say({"en": "no", "zh": "不对"}[lang])
    assert c.last_question() == saliva and not c.d.facts.known("drooling")
    await c.say(yes)
    assert c.d.facts.present("drooling")
    r = c.d.result().to_json()
    assert r["readbacks"][0]["kind"] == "words" and r["readbacks"][0]["outcome"] == "reask"


async def test_unsure_words_that_change_nothing_are_not_read_back() -> None:
    c = await _start("en", "I've had a sore throat for two days, um", ("um",))
    assert "I heard" not in c.last_question()
    c2 = await _start("en", "I've had a sore throat for two days")
    await c2.say("no", ("no",))
    await c2.say("yes")  # "no" was right
    assert c2.d.facts.known("drooling") and not c2.d.facts.present("drooling")
    assert "breathing" in c2.last_question()


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_first_statement_heard_wrongly_is_asked_for_again_not_the_whole_greeting(lang: str) -> None:
    """The caller skips the consent question and names the problem at once, with a word the
    recogniser was unsure of; told the read-back was wrong, the bot asks for the problem again."""
    c = Call(lang)
    await c.open()
    greeting = c.last_question()
    said, unsure = {"en": ("I have had a sore throat since yesterday.", ("throat",)),
                    "zh": ("我嗓子疼，从昨天开始的。", ("嗓",))}[lang]
    await c.say(said, unsure)
    assert {"en": "I heard", "zh": "我听到的是"}[lang] in c.last_question()
    await c.say({"en": "No.", "zh": "不对"}[lang])
    again = c.last_question()
    assert again != greeting and again.endswith(
        {"en": "What is the main problem today?", "zh": c.d.t("ask_complaint")}[lang][-8:])
    await c.say({"en": "I have had a sore throat since yesterday.", "zh": "我嗓子疼，从昨天开始的。"}[lang])
    assert c.d.assessment.complaints  # heard this time: triage goes on


@pytest.mark.parametrize(("unsure", "read_back"), [(("Go",), False), (("Yes",), True)])
async def test_a_short_answer_is_read_back_only_when_the_answer_hangs_on_an_unsure_word(
        unsure: tuple[str, ...], read_back: bool) -> None:
    c = Call("en")
    await c.open()
    await c.say("Yes, Go ahead.", unsure)  # to "Calls are recorded, OK?"
    assert ("I heard" in c.last_question()) is read_back
