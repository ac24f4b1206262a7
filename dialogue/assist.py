"""LLM assistance, only when the configured model is capable: findings as schema-checked JSON, passed
through `llm_policy` (it may raise suspicions that the bot confirms, it never lowers urgency; the rules stay
authoritative; disagreements are logged as finding ids, never caller text),
gentler phrasing of template questions, replies to off-script turns and summary polish, every
generated sentence passing `dialogue.guard`. Any failure falls back to the rule-based path."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from dialogue.guard import guarded
from dialogue.llm import ChatModel, LLMUnavailable

log = logging.getLogger("carecall.dialogue.assist")

_SYSTEM = {
    "en": (
        "You help a hospital phone triage line. You never diagnose, never name medicines or doses, and never "
        "tell anyone they do not need care. Keep to one or two short, kind sentences."
    ),
    "zh": (
        "你在协助医院的电话分诊热线。绝不诊断，绝不提药名或剂量，绝不告诉来电者不需要就医。用一两句简短、亲切的话回答。"
    ),
}


@dataclass(frozen=True, slots=True)
class LLMReading:
    """What the LLM's reading of one utterance may change, after the policy."""

    add: tuple[str, ...]  # findings written down as present (source "llm"); never an absence
    suspect: tuple[str, ...]  # red-flag findings the bot confirms with the caller before acting on them


def llm_policy(llm: dict[str, bool], rules: dict[str, bool], known: set[str], alarm: frozenset[str]) -> LLMReading:
    """The LLM goes through the same policy as the semantic layer: it may raise suspicions, never lower
    urgency. A finding that raises a red flag on its own is only ever suspected (the bot confirms it, also
    where the rules read the words as history); other findings it adds count as read by likeness (they never
    make a complaint "understood", so the fail-safe floor stays); what it denies is ignored, and so is what
    the caller's own words deny in the same utterance."""
    positives = [f for f, p in llm.items() if p and rules.get(f) is None]
    add = tuple(f for f in positives if f not in alarm and f not in known)
    suspect = tuple(f for f in positives if f in alarm)
    return LLMReading(add, suspect)


class _Finding(BaseModel):
    id: str
    present: bool


class _Findings(BaseModel):
    findings: list[_Finding]


def findings_schema(ids: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "enum": ids}, "present": {"type": "boolean"}},
                    "required": ["id", "present"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


class LLMAssist:
    def __init__(self, model: ChatModel, *, call_id: str = "", timeout_s: float = 8.0) -> None:
        self.model = model
        self.call_id = call_id
        self.timeout_s = timeout_s
        self.disagreements: list[dict[str, list[str]]] = []

    @property
    def capable(self) -> bool:
        try:
            return bool(self.model.capable)
        except Exception:  # a broken model object must never break a call
            return False

    async def extract(self, text: str, lang: str, catalog: dict[str, str]) -> dict[str, bool] | None:
        """Findings the caller's words state, as {id: present}; None when the LLM is unavailable."""
        if not self.capable:
            return None
        ids = sorted(catalog)
        listing = "\n".join(f"{i}: {catalog[i]}" for i in ids)
        messages = [
            {
                "role": "system",
                "content": "Extract clinical findings from one caller utterance. Only list findings the "
                "caller clearly states as present or clearly denies. Use only these ids:\n" + listing,
            },
            {"role": "user", "content": text},
        ]
        try:
            raw = await asyncio.wait_for(
                self.model.complete_json(messages, findings_schema(ids), max_tokens=300), self.timeout_s
            )
            parsed = _Findings.model_validate(raw)
        except (LLMUnavailable, TimeoutError, ValidationError, ValueError, TypeError) as e:
            log.warning("llm extraction unavailable call=%s error=%s", self.call_id, type(e).__name__)
            return None
        return {f.id: f.present for f in parsed.findings if f.id in catalog}

    def compare(self, rules: dict[str, bool], llm: dict[str, bool], red_flag_findings: set[str]) -> None:
        """Log where the two readings differ (finding ids only)."""
        rules_only = sorted(f for f, p in rules.items() if p and llm.get(f) is not True)
        llm_only = sorted(f for f, p in llm.items() if p and rules.get(f) is not True)
        conflict = sorted(f for f in set(rules) & set(llm) if rules[f] != llm[f])
        if rules_only or llm_only or conflict:
            entry = {
                "rules_only": rules_only,
                "llm_only": llm_only,
                "conflict": conflict,
                "red_flag_related": sorted((set(rules_only) | set(llm_only) | set(conflict)) & red_flag_findings),
            }
            self.disagreements.append(entry)
            log.info(
                "llm/rules disagreement call=%s rules_only=%s llm_only=%s conflict=%s",
                self.call_id,
                ",".join(rules_only),
                ",".join(llm_only),
                ",".join(conflict),
            )

    async def _say(self, instruction: str, lang: str, max_tokens: int = 120) -> str | None:
        messages = [
            {"role": "system", "content": _SYSTEM.get(lang, _SYSTEM["en"])},
            {"role": "user", "content": instruction},
        ]
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                async for delta in self.model.stream(messages, max_tokens=max_tokens, temperature=0.3):
                    parts.append(delta)
        except (LLMUnavailable, TimeoutError) as e:
            log.warning("llm phrasing unavailable call=%s error=%s", self.call_id, type(e).__name__)
            return None
        return "".join(parts).strip() or None

    async def rephrase(self, template: str, lang: str) -> str:
        """The template, perhaps said more warmly; the template itself whenever the guard trips."""
        if not self.capable:
            return template
        ask = (
            f"Rephrase this question for a caller, same meaning, one sentence, in English: {template}"
            if lang == "en"
            else f"把这个问题换个更亲切的说法，意思不变，一句话，用中文：{template}"
        )
        out = await self._say(ask, lang, max_tokens=80)
        text, _ = guarded(out, template, lang)
        return text

    async def offscript(self, caller_text: str, question: str, lang: str, fallback: str) -> str:
        """A short, safe reply to an off-script turn that leads back to the pending question."""
        if not self.capable:
            return fallback
        ask = (
            f'The caller said: "{caller_text}". Reply briefly and kindly without medical advice, then we will ask: '
            f'"{question}". Do not ask the question yourself.'
            if lang == "en"
            else f"来电者说：“{caller_text}”。请简短亲切地回应，不给医疗建议，"
            f"之后我们会问：“{question}”。不要自己提问。"
        )
        out = await self._say(ask, lang)
        text, _ = guarded(out, fallback, lang)
        return text

    async def polish(self, summary: str, lang: str) -> str:
        """A nurse summary made more readable, facts unchanged; the template if anything trips."""
        if not self.capable:
            return summary
        ask = (
            f"Rewrite this nurse handover note more clearly, keep every fact, add nothing: {summary}"
            if lang == "en"
            else f"把这段护士交接记录写得更通顺，保留所有事实，不要添加内容：{summary}"
        )
        out = await self._say(ask, lang, max_tokens=300)
        text, _ = guarded(out, summary, lang)
        return text
