"""A simulated caller: answers each question of a triage call from the case's truth, in lay words,
in Chinese or English: yes / no / a number / "I don't know" for what the truth does not settle.

It knows what a question asks from the dialogue's own state (`TriageDialogue.pending_question()`: the
question id, its kind, finding ids, slot). Where a dialogue offers no such state for a question (a new
question type), it falls back to the findings the engine's own extractor reads in the question text,
and counts the fallback, so a report shows how often it had to guess."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from dialogue.engine import NONSPECIFIC
from dialogue.evaluation.cases import ConversationCase
from dialogue.extract import extractor
from dialogue.facts import Facts
from dialogue.knowledge import Knowledge
from voice.languages import languages
from voice.languages.zh.numbers import zh_int  # the one Chinese number speller (the Mandarin pack)

Verdict = Literal["yes", "no", "unknown"]
NOT_QUESTIONS = frozenset({"consent", "complaint", "transfer_offer"})  # not counted as triage questions

_WORDS = {
    "en": {
        "yes": ["yes", "yeah", "yes, that's right", "yes, I think so"],
        "no": ["no", "no, not at all", "nope", "no, none of that"],
        "unknown": ["I don't know", "I'm not sure", "no idea, sorry"],
        "consent": ["yes, go ahead", "okay"],
        "yes_with": "yes, {0}",
        "again": "like I said, {0}",
        "transfer": "yes please",
        "none_of_them": "none of those",
        "no_with": "no, {0}",
        "and": " and ",  # between the options named after "which one?"
    },
    "zh": {
        "yes": ["有", "是的", "对，有的", "嗯，有"],
        "no": ["没有", "没有，都没有", "不是", "没有的"],
        "unknown": ["不知道", "说不清楚", "这个不太清楚"],
        "consent": ["好的", "可以"],
        "yes_with": "有，{0}",
        "again": "我刚才说了，{0}",
        "transfer": "好的",
        "none_of_them": "都没有",
        "no_with": "不对，{0}",
        "and": "，",
    },
}

def cn_decimal(v: float, point: str = "点") -> str:
    """38.5 → 三十八点五 (or 三十八度五 with point="度"), one decimal as people say it."""
    whole, frac = divmod(round(v * 10), 10)
    return zh_int(int(whole)) + (point + zh_int(int(frac)) if frac else "")


def _liang(n: int) -> str:
    return "两" if n == 2 else zh_int(n)


def _say_en(slot: str, v: float, pick: int) -> str:
    if slot == "temp_c":
        return [f"it was {v:g}", f"about {v:g} degrees"][pick % 2]
    if slot == "age_years":
        if v < 0.25:
            return f"{max(1, round(v * 52))} weeks old"
        if v < 2:
            return f"{max(1, round(v * 12))} months"
        return [f"{int(v)}", f"{int(v)} years old"][pick % 2]
    if slot == "duration_hours":
        if v < 1:
            return f"about {max(1, round(v * 60))} minutes"
        if v < 24:
            return f"about {v:g} hours"
        if v < 24 * 14:
            return f"{round(v / 24)} days"
        return f"{round(v / 168)} weeks"
    if slot == "pain_score":
        return [f"about a {int(v)}", f"{int(v)} out of 10"][pick % 2]
    if slot == "pregnancy_weeks":
        return f"{int(v)} weeks"
    if slot == "glucose_mmol":
        return f"the meter said {v:g}"
    if slot == "bp_systolic":
        return f"{int(v)} over 95"
    if slot == "spo2":
        return f"{int(v)} percent"
    if slot == "episodes_per_day":
        return f"about {int(v)} times today"
    return f"{v:g}"


def _say_zh(slot: str, v: float, pick: int) -> str:
    if slot == "temp_c":
        return cn_decimal(v, "度") if v % 1 else zh_int(int(v)) + "度"
    if slot == "age_years":
        if v < 0.25:
            return f"{_liang(max(1, round(v * 52)))}周"
        if v < 2:
            return f"{_liang(max(1, round(v * 12)))}个月"
        return f"{zh_int(int(v))}岁"
    if slot == "duration_hours":
        if v < 1:
            return f"{_liang(max(1, round(v * 60)))}分钟"
        if v < 24:
            return f"{_liang(round(v))}个小时" if v >= 1 else "半个小时"
        if v < 24 * 14:
            return f"{_liang(round(v / 24))}天"
        return f"{_liang(round(v / 168))}个星期"
    if slot == "pain_score":
        return f"{zh_int(int(v))}分"
    if slot == "pregnancy_weeks":
        return f"怀孕{zh_int(int(v))}周"
    if slot == "glucose_mmol":
        return f"血糖仪上是{cn_decimal(v)}"
    if slot == "bp_systolic":
        return f"高压{zh_int(int(v))}"
    if slot == "spo2":
        return f"血氧{zh_int(int(v))}"
    if slot == "episodes_per_day":
        return f"今天{zh_int(int(v))}次"
    return cn_decimal(v)


# How a caller says a number, per language (a close language's until one has its own: `languages.pick`).
_SAY_NUMBER = {"en": _say_en, "zh": _say_zh}


def say_number(slot: str, v: float, lang: str, pick: int = 0) -> str:
    """A number as a caller says it: "it was 38.5", "三十八度五", "six weeks old", "两个月"."""
    return languages.pick(_SAY_NUMBER, lang)(slot, v, pick)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    question: str  # the question id answered ("?" when it had to be guessed from the text)
    counted: bool  # a triage question (not consent, complaint or the transfer offer)
    fallback: bool = False  # the dialogue's state did not say what was asked
    confirmation: bool = False  # the question was a confirmation (of a suspected finding)
    findings: tuple[str, ...] = ()


def truth_facts(case: ConversationCase, kn: Knowledge) -> Facts:
    """The truth as engine facts (derived findings included): for red flags the case should raise."""
    f = Facts()
    for fid in case.truth.present:
        f.set_finding(fid, True, 0, "", "")
    for fid in case.truth.absent:
        f.set_finding(fid, False, 0, "", "")
    if case.truth.pregnancy_weeks is not None:
        f.set_finding("pregnant", True, 0, "", "")
    for slot, v in case.truth.slot_values().items():
        f.set_slot(slot, v, 0, "", "")
    f.derive(kn.catalog)
    return f


class SimulatedCaller:
    def __init__(self, case: ConversationCase, kn: Knowledge) -> None:
        self.case = case
        self.kn = kn
        self.lang = case.lang
        self.w = languages.pick(_WORDS, case.lang)
        self.facts = truth_facts(case, kn)
        self.complaint_asked = 0

    def _pick(self, options: list[str], qid: str) -> str:
        return options[zlib.crc32(f"{self.case.id}/{qid}".encode()) % len(options)]

    def verdict(self, fid: str) -> Verdict:
        t = self.case.truth
        if fid in t.unknown:
            return "unknown"
        if self.facts.present(fid):
            return "yes"
        if fid in t.absent or self.facts.known(fid):
            return "no"
        if fid == "pregnant" and (t.sex == "m" or (t.age is not None and not 12 <= t.age <= 55)):
            return "no"
        return "no" if t.rest == "absent" else "unknown"

    def reply(self, q: object | None, bot_text: str) -> Reply:
        """Answer the pending question `q` (a `PendingQuestion`, or None), heard as `bot_text`."""
        qid = str(getattr(q, "id", "") or "")
        kind = str(getattr(q, "kind", "") or "")
        findings = tuple(getattr(q, "findings", ()) or ())
        slot = getattr(q, "slot", None)
        confirmation = "confirm" in qid or kind == "confirm"
        if qid == "consent":
            return Reply(self._pick(self.w["consent"], qid), qid, False)
        if qid == "complaint":
            self.complaint_asked += 1
            if self.complaint_asked == 1:
                return Reply(self.case.opening, qid, False)
            # asked again: the chief complaint (the first present finding) in the caller's other words
            main = self.case.truth.present[:1]
            said = [p for fid in main for p in self.case.phrasing(fid)] or [self.case.opening]
            return Reply(self.w["again"].format(said[(self.complaint_asked - 2) % len(said)]), qid, False)
        if qid == "transfer_offer":
            return Reply(self.w["transfer"], qid, False)
        if kind == "which":
            return self._which(q, qid)
        if kind == "readback_words":
            return Reply(self._pick(self.w["yes"], qid), qid, True)
        if kind == "readback_number" and slot:
            return self._readback_number(slot, getattr(q, "heard", None), qid)
        fallback = False
        if not findings and not slot:
            fallback = True
            mentioned = extractor(self.lang).extract(bot_text).findings()
            findings = tuple(f for f in mentioned if f not in NONSPECIFIC)
            qid = qid or "?"
        if slot:
            value = self.case.truth.slot_values().get(slot)
            if slot == "duration_hours" and isinstance(self.case.truth.durations, dict):
                pid = qid.split(".", 1)[0]
                triggers = self.kn.protocols[pid].triggers if pid in self.kn.protocols else []
                value = next((self.case.truth.durations[t] for t in triggers if t in self.case.truth.durations), value)
            if value is None and slot == "temp_c" and self.verdict("fever") == "no":
                value = 36.8  # no fever: a caller who measured says a normal figure
            if value is None:
                return Reply(self._pick(self.w["unknown"], qid), qid, True, fallback, confirmation)
            return Reply(say_number(slot, value, self.lang, zlib.crc32(qid.encode())), qid, True, fallback,
                         confirmation, (slot,))
        verdicts = {f: self.verdict(f) for f in findings}
        yes = [f for f, v in verdicts.items() if v == "yes"]
        if yes:
            lay = next((p for f in yes for p in self.case.phrasing(f)), None)
            text = self.w["yes_with"].format(lay) if lay else self._pick(self.w["yes"], qid)
            return Reply(text, qid, True, fallback, confirmation, findings)
        if verdicts and all(v == "no" for v in verdicts.values()):
            return Reply(self._pick(self.w["no"], qid), qid, True, fallback, confirmation, findings)
        return Reply(self._pick(self.w["unknown"], qid), qid, True, fallback, confirmation, findings)

    def _which(self, q: object, qid: str) -> Reply:
        """ "Which one?" after a bundled yes: the options with a present finding, by the bot's own names."""
        options = getattr(q, "options", ()) or ()
        named = [name for fids, name in options if any(self.verdict(f) == "yes" for f in fids)]
        findings = tuple(f for fids, _ in options for f in fids)
        if named:
            return Reply(self.w["and"].join(named), qid, True, findings=findings)
        if options and all(self.verdict(f) == "no" for fids, _ in options for f in fids):
            return Reply(self.w["none_of_them"], qid, True, findings=findings)
        return Reply(self._pick(self.w["unknown"], qid), qid, True, findings=findings)

    def _readback_number(self, slot: str, heard: float | None, qid: str) -> Reply:
        """ "I heard 38.5, is that right?": yes when it is the truth, else no and the right figure."""
        value = self.case.truth.slot_values().get(slot)
        if value is None:
            return Reply(self._pick(self.w["unknown"], qid), qid, True, findings=(slot,))
        tolerance = 0.05 if slot == "age_years" else 0.15
        if heard is not None and abs(heard - value) <= tolerance:
            return Reply(self._pick(self.w["yes"], qid), qid, True, findings=(slot,))
        return Reply(self.w["no_with"].format(say_number(slot, value, self.lang)), qid, True, findings=(slot,))
