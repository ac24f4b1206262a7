"""The shape of the clinical knowledge in `prompts/`: one model per file kind (findings, lexicons, complaint
protocols, red flags, phrasings, follow-up questionnaires), the conditions their rules are written in and the
dispositions. Loading the files and checking them against each other is dialogue.knowledge's job."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dialogue.slots import SLOTS

Disposition = Literal["emergency_ambulance", "emergency", "consultation_24", "consultation", "self_care"]
DISPOSITIONS: tuple[str, ...] = ("self_care", "consultation", "consultation_24", "emergency", "emergency_ambulance")
URGENCY = {d: i for i, d in enumerate(DISPOSITIONS)}
AnswerKind = Literal["yes_no", "number", "scale", "duration", "free"]
_NUM_RE = re.compile(r"^\s*(<=|>=|<|>|==)\s*(-?\d+(?:\.\d+)?)\s*$")


class ProtocolError(ValueError):
    """A prompts/ data file is malformed; the message names the file and the field."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Cond(StrictModel):
    """all: every finding present; any: at least one; none: none present; num: every slot test holds
    (an unknown number fails its test); or: at least one sub-condition holds. Empty = always true."""

    all: list[str] = []
    any: list[str] = []
    none: list[str] = []
    num: dict[str, str] = {}
    or_: list[Cond] = Field(default_factory=list, alias="or")

    @field_validator("num")
    @classmethod
    def _check_num(cls, v: dict[str, str]) -> dict[str, str]:
        for slot, test in v.items():
            if slot not in SLOTS:
                raise ValueError(f"unknown number '{slot}' (known: {', '.join(SLOTS)})")
            if not _NUM_RE.match(str(test)):
                raise ValueError(f"'{slot}: {test}' must look like '>= 38'")
        return v

    def finding_ids(self) -> set[str]:
        ids = set(self.all) | set(self.any) | set(self.none)
        for c in self.or_:
            ids |= c.finding_ids()
        return ids


def num_test(value: float | None, test: str) -> bool:
    if value is None:
        return False
    m = _NUM_RE.match(test)
    assert m is not None
    op, x = m.group(1), float(m.group(2))
    return {"<": value < x, "<=": value <= x, ">": value > x, ">=": value >= x, "==": value == x}[op]


class Derived(StrictModel):
    finding: str
    when: Cond


class Catalog(StrictModel):
    findings: dict[str, str]
    derived: list[Derived] = []


class Question(StrictModel):
    id: str
    kind: AnswerKind
    finding: str | None = None  # yes_no: the finding a "yes" confirms
    slot: str | None = None  # number / scale / duration: where the answer goes
    ask_if: Cond | None = None  # ask only when this holds
    critical: bool = False  # asked even when the question budget is spent

    @field_validator("slot")
    @classmethod
    def _check_slot(cls, v: str | None) -> str | None:
        if v is not None and v not in SLOTS:
            raise ValueError(f"unknown number '{v}'")
        return v


class Rule(StrictModel):
    when: Cond
    disposition: Disposition
    reason: str = ""


class Protocol(StrictModel):
    id: str
    department: str
    triggers: list[str]
    applies: Cond | None = None  # e.g. only for children
    questions: list[Question] = []
    rules: list[Rule] = []
    default: Disposition
    always: bool = False  # evaluated for every caller (general modifiers), never a chief complaint


class Picture(StrictModel):
    """A picture that points to a red flag without its key finding (pain down the left arm with sweating, not
    a word of the chest): the bot asks `ask` at once, as a suspected red flag (dialogue.confirm)."""

    ask: str
    when: Cond


class RedFlag(StrictModel):
    id: str
    when: Cond
    level: Literal["emergency_ambulance", "emergency"]
    modes: list[Literal["triage", "followup"]] = ["triage", "followup"]
    # what the flag needs in a triage call instead of `when`: a post-discharge flag holds in triage only when
    # the caller says they have just left hospital (calf pain alone is no emergency; after an operation it is)
    triage_when: Cond | None = None
    pictures: list[Picture] = []

    def condition(self, mode: str) -> Cond | None:
        """The rule this flag applies in a call of `mode`; None where the flag has no place in it."""
        if mode not in self.modes:
            return None
        return self.triage_when if mode == "triage" and self.triage_when is not None else self.when

    def finding_ids(self) -> set[str]:
        """Every finding either of its rules names."""
        return self.when.finding_ids() | (self.triage_when.finding_ids() if self.triage_when else set())


class RedFlags(StrictModel):
    red_flags: list[RedFlag]


class Negation(StrictModel):
    cues: list[str]
    pseudo: list[str] = []
    terminators: list[str] = []
    resolved: list[str] = []
    resolvable: list[str] = []


class Answers(StrictModel):
    unknown: list[str]
    no: list[str]
    yes: list[str]
    repeat: list[str]
    transfer: list[str]
    correction: list[str] = []
    stop: list[str] = []
    identity_denied: list[str] = []
    no_more: list[str] = []


class Lexicon(StrictModel):
    negation: Negation
    answers: Answers
    absent: dict[str, list[str]] = {}
    findings: dict[str, list[str]]
    # a NEGATED mention of a normal function is itself a finding ("haven't felt the baby kick", "没感觉到胎动")
    denied_means: dict[str, list[str]] = {}
    # where it hurts: a pain word and one of these body parts in the same clause is that location's pain
    # ("my back's been aching", "脸上长了个痘痘，有点疼" stays plain pain: the part must share the clause)
    pain_sites: dict[str, list[str]] = {}
    # known speech-recognition confusions, rewritten before anything is matched: pattern -> what was meant
    asr_confusions: dict[str, str] = {}
    # regional and dialect words, rewritten into the standard words before anything is matched (冇得 -> 没有,
    # 伢子 -> 孩子): plain words, longest first, so that every phrase of the lexicon reads them too
    regional: dict[str, str] = {}
    # phrases that look like a finding but are not it ("poison ivy" is no poisoning); dialogue.lexicon syntax
    exclusions: dict[str, list[str]] = {}
    # English: long words often misspelt by speech recognition, read within one edit (dialogue.lexicon);
    # Mandarin: words never rewritten by the toneless-pinyin tolerance
    asr_words: list[str] = []
    # English: names that speech recognition hears as ordinary words ("war for in" = warfarin, "Ella Quiss" =
    # Eliquis), read by their sound across word boundaries (dialogue.lexicon.sound_key)
    asr_names: list[str] = []


class ProtocolText(StrictModel):
    name: str
    questions: dict[str, str] = {}
    safety_net: str = ""


class Phrases(BaseModel):
    """prompts/<lang>/dialogue.yaml: everything the bot says outside protocol questions."""

    model_config = ConfigDict(extra="forbid")
    texts: dict[str, str]
    dispositions: dict[str, str]
    departments: dict[str, str]
    red_flags: dict[str, str]
    findings: dict[str, str] = {}


class FollowupQuestion(StrictModel):
    id: str
    section: str
    kind: AnswerKind
    finding: str | None = None  # a "yes" confirms this finding (red-flag screen)
    alarm_if: Literal["yes", "no"] | None = None
    alarm_min: float | None = None  # number / scale answers at or above raise a nurse alarm
    alarm_max: float | None = None  # at or below
    departments: list[str] = []  # empty: every department
    slot: str | None = None  # number / scale answers read in this slot's unit and kept as the call's number
    alarm_on_new_findings: bool = False  # any finding the answer newly states flags the call...
    new_findings_ignored: list[str] = []  # ...except these
    skip_if_no: str | None = None  # skipped when the named earlier question was answered no
    then_say: str | None = None  # a prompts/<lang>/followup.yaml `texts` key said after the answer


class Questionnaire(StrictModel):
    questions: list[FollowupQuestion]


class FollowupText(StrictModel):
    texts: dict[str, str]
    questions: dict[str, str]
