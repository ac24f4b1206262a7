"""The emergency screen: before any disposition below `emergency`, a triage call asks about the life threats
the caller's words have not settled (breathing, chest pain, stroke signs, collapse, bleeding, self-harm; the
infant and pregnancy screens where they apply), bundled the way a nurse would ask, each "yes" or "not sure"
followed by the question that settles it. Logic in prompts/screens/*.yaml, wording in prompts/<lang>/screen.yaml.

`Screen` is one call's screen: `next()` gives the next question (or None when the screen is complete) and
`take()` records the caller's answer into the call's facts (source "screen") and into `records`, the reason
for each question kept for the call's result."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from dialogue.extract import Mention
from dialogue.facts import Facts
from dialogue.knowledge import LANGS, PROMPTS_DIR, Knowledge, check_ids, knowledge, read_yaml, validated
from dialogue.protocols import Cond, ProtocolError, StrictModel
from dialogue.slots import SLOTS, slot_answer
from voice.languages import languages

AskKind = Literal["bundle", "single", "which", "follow", "number"]


class ScreenItem(StrictModel):
    id: str
    findings: list[str]
    general: str | None = None
    yes_finding: str | None = None
    follow_up: bool = False
    slot: str | None = None
    when: Cond | None = None
    complaints: list[str] = Field(default_factory=list)
    or_findings: list[str] = Field(default_factory=list)
    why: str


class Bundle(StrictModel):
    id: str
    items: list[str]
    template: str = "bundle"


class ScreenSpec(StrictModel):
    items: list[ScreenItem]
    bundles: list[Bundle]


class ItemText(StrictModel):
    phrase: str = ""
    question: str
    follow_up: str = ""
    keys: list[str] = Field(default_factory=list)


class ScreenText(StrictModel):
    texts: dict[str, str]
    items: dict[str, ItemText]


@dataclass(frozen=True)
class ScreenData:
    items: dict[str, ScreenItem]
    bundles: list[Bundle]
    text: dict[str, ScreenText]


def load_screen(root: Path | str = PROMPTS_DIR, kn: Knowledge | None = None) -> ScreenData:
    """Loads and validates the screen; a malformed file raises `ProtocolError` naming file and field."""
    root = Path(root)
    kn = kn or knowledge(str(root))
    known = kn.known_findings()
    items: dict[str, ScreenItem] = {}
    bundles: list[Bundle] = []
    for path in sorted((root / "screens").glob("*.yaml")):
        spec: ScreenSpec = validated(ScreenSpec, path, read_yaml(path))
        for i, it in enumerate(spec.items):
            ids = set(it.findings) | set(it.or_findings) | {f for f in (it.general, it.yes_finding) if f}
            check_ids(path, f"items[{i}]", ids | (it.when.finding_ids() if it.when else set()), known)
            if it.slot is not None and it.slot not in SLOTS:
                raise ProtocolError(f"{path}: items[{i}].slot: unknown number '{it.slot}'")
            if it.slot is None and not it.findings:
                raise ProtocolError(f"{path}: items[{i}].findings: an item asks about findings or a slot")
            if it.id in items:
                raise ProtocolError(f"{path}: items[{i}].id: duplicate item '{it.id}'")
            bad = set(it.complaints) - set(kn.protocols) - {"none"}
            if bad:
                raise ProtocolError(f"{path}: items[{i}].complaints: unknown protocol(s) {', '.join(sorted(bad))}")
            items[it.id] = it
        for i, b in enumerate(spec.bundles):
            for x in b.items:
                if x not in items:
                    raise ProtocolError(f"{path}: bundles[{i}].items: unknown item '{x}'")
        bundles += spec.bundles
    if not items:
        raise ProtocolError(f"{root / 'screens'}: no screen files")
    text: dict[str, ScreenText] = {}
    for lang in LANGS:
        path = root / lang / "screen.yaml"
        st: ScreenText = validated(ScreenText, path, read_yaml(path))
        for key in ("bundle", "which", "join", "join_last", "not_understood"):
            if key not in st.texts:
                raise ProtocolError(f"{path}: texts.{key}: missing")
        for b in bundles:
            if b.template not in st.texts:
                raise ProtocolError(f"{path}: texts.{b.template}: missing (bundle {b.id})")
        for it in items.values():
            t = st.items.get(it.id)
            if t is None:
                raise ProtocolError(f"{path}: items.{it.id}: missing {lang} wording")
            if it.follow_up and not t.follow_up:
                raise ProtocolError(f"{path}: items.{it.id}.follow_up: missing (the item has a follow-up)")
            if it.slot is None and not t.phrase and any(it.id in b.items and len(b.items) > 1 for b in bundles):
                raise ProtocolError(f"{path}: items.{it.id}.phrase: missing (the item is bundled)")
        text[lang] = st
    return ScreenData(items, bundles, text)


@lru_cache(maxsize=4)
def screen_data(root: str = str(PROMPTS_DIR)) -> ScreenData:
    return load_screen(root)


@dataclass(frozen=True, slots=True)
class ScreenAsk:
    kind: AskKind
    items: tuple[str, ...]
    text: str
    answer_kind: Literal["yes_no", "free", "number"]
    asked_turn: int
    disposition: str  # the disposition it was asked before


@dataclass
class Screen:
    """One call's emergency screen."""

    lang: str
    data: ScreenData = field(default_factory=screen_data)
    records: list[dict[str, Any]] = field(default_factory=list)
    queue: list[tuple[AskKind, tuple[str, ...]]] = field(default_factory=list)
    asked: set[str] = field(default_factory=set)  # items whose screen question was put to the caller
    retried: bool = False

    # --- what to ask -----------------------------------------------------------------------------
    def in_scope(self, it: ScreenItem, facts: Facts, complaints: list[str]) -> bool:
        if it.when is not None and not facts.holds(it.when):
            return False
        if it.complaints:
            chiefs = set(complaints) or {"none"}
            if not (chiefs & set(it.complaints) or any(facts.present(f) for f in it.or_findings)):
                return False
        return True

    def settled(self, it: ScreenItem, facts: Facts) -> bool:
        if it.slot is not None:
            return facts.num(it.slot) is not None
        # A present finding settles nothing by itself: had it raised a red flag the call would have escalated
        # and never reached the screen, so the threat is still open ("I'm all sweaty" says nothing about chest
        # pain). Settled when excluded (the broad finding denied) or when every finding of it is known.
        if it.general is not None and facts.known(it.general) and not facts.present(it.general):
            return True
        return all(facts.known(f) for f in it.findings)

    def pending(self) -> bool:
        return bool(self.queue)

    def next(
        self, facts: Facts, complaints: list[str], disposition: str, turn: int, *, queued_only: bool = False
    ) -> ScreenAsk | None:
        """The next screen question: queued follow-ups first, then the next bundle with unsettled items."""
        while self.queue:
            kind, ids = self.queue.pop(0)
            open_ids = tuple(i for i in ids if not self.settled(self.data.items[i], facts))
            if open_ids:
                return self._ask(kind, open_ids, turn, disposition)
        if queued_only:
            return None
        for b in self.data.bundles:
            todo = [
                self.data.items[i]
                for i in b.items
                if i not in self.asked
                and self.in_scope(self.data.items[i], facts, complaints)
                and not self.settled(self.data.items[i], facts)
            ]
            if not todo:
                continue
            for it in todo:  # already said yes to the broad question: only the settling one is left
                if it.general is not None and facts.present(it.general) and it.follow_up:
                    return self._ask("follow", (it.id,), turn, disposition)
            if todo[0].slot is not None:
                return self._ask("number", (todo[0].id,), turn, disposition)
            ids = tuple(it.id for it in todo if it.slot is None)
            return self._ask("bundle" if len(ids) > 1 else "single", ids, turn, disposition, b.template)
        return None

    def _ask(
        self, kind: AskKind, ids: tuple[str, ...], turn: int, disposition: str, template: str = "bundle"
    ) -> ScreenAsk:
        st = self.data.text[self.lang]
        if kind in ("bundle", "which"):
            key = "which" if kind == "which" else template
            text = st.texts[key].format(items=self._join([st.items[i].phrase for i in ids]))
        elif kind == "follow":
            text = st.items[ids[0]].follow_up
        else:
            text = st.items[ids[0]].question
        self.asked |= set(ids)
        answer_kind: Literal["yes_no", "free", "number"] = {"which": "free", "number": "number"}.get(kind, "yes_no")  # type: ignore[assignment]
        return ScreenAsk(kind, ids, text, answer_kind, turn, disposition)

    def _join(self, parts: list[str]) -> str:
        t = self.data.text[self.lang].texts
        if len(parts) == 1:
            return parts[0]
        return t["join"].join(parts[:-1]) + t["join_last"] + parts[-1]

    # --- what the caller said --------------------------------------------------------------------
    def take(
        self, ask: ScreenAsk, answer: str | None, mentions: dict[str, Mention], text: str, turn: int, facts: Facts
    ) -> bool:
        """Record the answer. Returns False (once) when the answer should be asked for again."""
        items = [self.data.items[i] for i in ask.items]
        if ask.kind == "number":
            it = items[0]
            assert it.slot is not None
            value = slot_answer(it.slot, text, self.lang)
            if value is None and answer is None and not self.retried:
                self.retried = True
                return False
            self.retried = False
            if value is not None and facts.num(it.slot) is None:
                facts.set_slot(it.slot, value, turn, text, text)
            self._record(ask, it.id, "number" if value is not None else "unknown", turn)
            return True
        if ask.kind == "follow":
            return self._take_follow(ask, items[0], answer, mentions, text, turn, facts)
        said_yes, said_no = self._named(items, answer, mentions, text, ask.kind)
        if not said_yes and not said_no and answer is None and not self.retried:
            self.retried = True
            return False
        self.retried = False
        for it in items:
            if it.id in said_yes:
                self._yes(ask, it, "yes (named)" if len(items) > 1 else "yes", text, turn, facts)
            elif it.id in said_no:
                self._no(ask, it, "no", text, turn, facts)
            elif said_yes and answer != "unknown":
                self._no(ask, it, "no (not named)", text, turn, facts)
            elif answer == "no":
                self._no(ask, it, "no", text, turn, facts)
            elif len(items) == 1 and answer == "yes":
                self._yes(ask, it, "yes", text, turn, facts)
            elif len(items) == 1:
                self._unsure(ask, it, "not sure" if answer == "unknown" else "unclear", text, turn, facts)
        rest = tuple(it.id for it in items if it.id not in said_yes | said_no)
        if len(items) > 1 and not said_yes and answer != "no" and rest:
            # "yes" or "not sure" to several at once: which one? (after "which?" itself: one by one)
            for it in items:
                if it.id in rest:
                    self._record(ask, it.id, answer or "unclear", turn)
            if ask.kind == "bundle" and answer == "yes":
                self.queue.insert(0, ("which", rest))
            else:
                self.queue[0:0] = [("single", (i,)) for i in rest]
        return True

    def _named(
        self, items: list[ScreenItem], answer: str | None, mentions: dict[str, Mention], text: str, kind: AskKind
    ) -> tuple[set[str], set[str]]:
        """Items the caller's own words named, present or denied ("no chest pain, just a bit breathless")."""
        yes: set[str] = set()
        no: set[str] = set()
        for it in items:
            ids = [*it.findings, *([it.general] if it.general else [])]
            found = [mentions[f] for f in ids if f in mentions]
            if any(m.present for m in found):
                yes.add(it.id)
            elif found:
                no.add(it.id)
        # key words name an item after "yes" / "which one?", or after a "no, but my arm's gone numb" that says
        # something is present (a finding the lexicon read), never after a bare or fully negated "no"
        if answer != "no" or kind == "which" or any(m.present for m in mentions.values()):
            low = text.lower()
            for it in items:
                if it.id in yes | no:
                    continue
                keys = self.data.text[self.lang].items[it.id].keys
                if any(self._key_in(k, low) for k in keys):
                    yes.add(it.id)
        return yes, no

    def _key_in(self, key: str, low: str) -> bool:
        if not languages.or_fallback(self.lang).spaced:  # unspaced text: a key word may sit anywhere
            return key in low
        return re.search(rf"(?<![a-z]){re.escape(key.lower())}", low) is not None

    def _take_follow(
        self,
        ask: ScreenAsk,
        it: ScreenItem,
        answer: str | None,
        mentions: dict[str, Mention],
        text: str,
        turn: int,
        facts: Facts,
    ) -> bool:
        named = [f for f in it.findings if f in mentions and mentions[f].present]
        if named or answer == "yes":
            if not named and it.yes_finding:
                facts.set_finding(it.yes_finding, True, turn, text, text, source="screen")
            self._record(ask, it.id, "yes", turn)
        elif answer == "no":
            for f in it.findings:
                if not facts.known(f):
                    facts.set_finding(f, False, turn, text, text, source="screen")
            self._record(ask, it.id, "no", turn)
        elif answer is None and not self.retried and not mentions:
            self.retried = True
            return False
        else:  # "not sure", or still no clear answer: when unsure, escalate
            if it.yes_finding:
                facts.set_finding(it.yes_finding, True, turn, text, text, source="screen_unsure")
            self._record(ask, it.id, "not sure: treated as present", turn)
        self.retried = False
        return True

    def _yes(self, ask: ScreenAsk, it: ScreenItem, what: str, text: str, turn: int, facts: Facts) -> None:
        self._record(ask, it.id, what, turn)
        if it.general is not None and not facts.known(it.general):
            facts.set_finding(it.general, True, turn, text, text, source="screen")
        if it.follow_up:
            self.queue.insert(0, ("follow", (it.id,)))
        elif it.yes_finding and not any(facts.present(f) for f in it.findings):
            facts.set_finding(it.yes_finding, True, turn, text, text, source="screen")

    def _unsure(self, ask: ScreenAsk, it: ScreenItem, what: str, text: str, turn: int, facts: Facts) -> None:
        if it.follow_up:
            self._record(ask, it.id, what, turn)
            self.queue.insert(0, ("follow", (it.id,)))
        else:
            self._record(ask, it.id, f"{what}: treated as present", turn)
            if it.yes_finding:
                facts.set_finding(it.yes_finding, True, turn, text, text, source="screen_unsure")

    def _no(self, ask: ScreenAsk, it: ScreenItem, what: str, text: str, turn: int, facts: Facts) -> None:
        self._record(ask, it.id, what, turn)
        for f in [*([it.general] if it.general else []), *it.findings]:
            if not facts.known(f):
                facts.set_finding(f, False, turn, text, text, source="screen")

    def _record(self, ask: ScreenAsk, item: str, answer: str, turn: int) -> None:
        self.records.append(
            {
                "item": item,
                "question": ask.kind,
                "asked_turn": ask.asked_turn,
                "answer_turn": turn,
                "reason": f"{self.data.items[item].why} (before a {ask.disposition} disposition)",
                "answer": answer,
            }
        )

    def questions(self) -> int:
        """Screen questions put to the caller (a bundle counts once)."""
        return len({(r["asked_turn"], r["question"], r["answer_turn"]) for r in self.records})


def fixed_phrases(lang: str, data: ScreenData | None = None) -> list[str]:
    """Every fixed thing the screen may say in `lang` (whole bundles, single questions, follow-ups), for a
    synthesiser to render at start-up (issue 12's warm start). Bundles with items dropped are composed live."""
    data = data or screen_data()
    st = data.text[lang]  # what the bot says is the language's own wording (prompts/<lang>/screen.yaml)
    out: list[str] = []
    probe = Screen(lang, data)
    for b in data.bundles:
        ids = tuple(i for i in b.items if data.items[i].slot is None)
        if len(ids) > 1:
            out.append(probe._ask("bundle", ids, 0, "", b.template).text)
    for it in data.items.values():
        t = st.items[it.id]
        out += [t.question] + ([t.follow_up] if t.follow_up else [])
    return list(dict.fromkeys(out))
