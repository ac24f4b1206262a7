"""`carecall simulate`: whole triage conversations between a simulated caller (answers from a case's
truth, `dialogue.evaluation.caller`) and the real `TriageDialogue`, scored like `carecall eval` plus
questions per call and recall per red flag. The voice variant is `dialogue.evaluation.voice`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dialogue.engine import red_flags
from dialogue.evaluation.caller import SimulatedCaller, truth_facts
from dialogue.evaluation.cases import ConversationCase
from dialogue.evaluation.metrics import Row
from dialogue.evaluation.pending import pending_of
from dialogue.factory import build_dialogue_factory
from dialogue.knowledge import Knowledge, knowledge
from voice.conversation import CallerUtterance, EndCall, Transfer
from voice.events import CallInfo
from voice.languages import languages
from voice.result import CallResult

MAX_TURNS = 40  # a conversation that has not ended by then is stopped and reported as "max_turns"


@dataclass(slots=True)
class Conversation:
    row: Row
    turns: list[tuple[str, str]] = field(default_factory=list)  # (speaker, text)
    result: CallResult = field(default_factory=lambda: CallResult(mode="triage"))
    fallbacks: int = 0


def expected_red_flags(case: ConversationCase, kn: Knowledge) -> list[str]:
    if case.red_flags is not None:
        return list(case.red_flags)
    return [f.id for f in red_flags(truth_facts(case, kn), kn, "triage")]


def _said(outputs: list[Any]) -> str:
    return " ".join(o for o in outputs if isinstance(o, str)).strip()


def confirmed_red_flag(result: CallResult, rf_findings: frozenset[str]) -> bool:
    """A red-flag confirmation in the call's record, if any."""
    return any(c.finding in rf_findings or c.red_flag for c in result.confirmations)


async def converse(case: ConversationCase, factory: Any, kn: Knowledge, max_turns: int = MAX_TURNS) -> Conversation:
    """One simulated call, text only, through the same factory the server uses (no LLM)."""
    d = factory(CallInfo(call_id=f"sim-{case.id}", language=case.lang, channel="text", mode="triage", params={}))
    caller = SimulatedCaller(case, kn)
    rf_findings = kn.red_flag_findings()
    turns: list[tuple[str, str]] = []
    outputs = [o async for o in d.opening()]
    questions = fallbacks = 0
    confirmation = False
    end_reason = "max_turns"
    for turn in range(1, max_turns + 1):
        turns.append(("bot", _said(outputs)))
        if any(isinstance(o, EndCall | Transfer) for o in outputs):
            end_reason = next(o.reason for o in outputs if isinstance(o, EndCall | Transfer)) or "ended"
            break
        pending = pending_of(d)
        if pending is None and getattr(d, "escalated", None):
            end_reason = "escalated"  # held for a nurse after a red flag: nothing more to answer
            break
        reply = caller.reply(pending, turns[-1][1])
        questions += reply.counted
        fallbacks += reply.fallback
        confirmation |= reply.confirmation and bool(set(reply.findings) & rf_findings)
        turns.append(("caller", reply.text))
        outputs = [o async for o in d.respond(CallerUtterance(text=reply.text, turn_index=turn))]
        if not outputs:
            end_reason = "no_reply"
            break
    result = d.result()
    confirmation |= confirmed_red_flag(result, rf_findings)
    row = Row(
        id=case.id,
        lang=case.lang,
        pred=result.disposition or "",
        department=result.department,
        gold=case.gold,
        gold3=case.gold3_or_derived,
        departments=list(case.departments),
        red_flags=list(result.red_flags),
        confirmation_asked=confirmation,
        questions=questions,
        expected_red_flags=expected_red_flags(case, kn),
        end_reason=end_reason,
    )
    return Conversation(row, turns, result, fallbacks)


async def simulate(cases: list[ConversationCase], kn: Knowledge | None = None) -> list[Conversation]:
    kn = kn or knowledge()
    numbers = {code: pack.emergency_number for code, pack in languages.items()}
    factory = build_dialogue_factory(chat_model=None, emergency_numbers=numbers, llm_capable=False)
    return [await converse(c, factory, kn) for c in cases]
