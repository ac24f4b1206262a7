"""LLM assistance, only when the configured model is capable: findings as schema-checked JSON, passed
through `llm_policy` (it may raise suspicions that the bot confirms, it never lowers urgency; the rules stay
authoritative; disagreements are logged as finding ids, never caller text),
gentler phrasing of template questions, replies to off-script turns and summary polish, every
generated sentence passing `dialogue.guard`. Any failure falls back to the rule-based path."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dialogue.guard import guarded
from dialogue.knowledge import PROMPTS_DIR
from dialogue.llm import ChatModel, LLMUnavailable
from dialogue.protocols import ProtocolError
from voice.languages import languages

log = logging.getLogger("carecall.dialogue.assist")

_ASKS = ("system", "rephrase", "offscript", "polish")


@functools.lru_cache(maxsize=8)
def instructions(lang: str) -> dict[str, str]:
    """What is asked of the LLM in `lang` (prompts/<lang>/llm.yaml, clinician-editable)."""
    code = languages.or_fallback(lang).code
    path = PROMPTS_DIR / code / "llm.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [k for k in _ASKS if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        raise ProtocolError(f"{path}: missing {', '.join(missing)}")
    return {k: str(data[k]).strip() for k in _ASKS}


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

    def compare(self, rules: dict[str, bool], llm: dict[str, bool], red_flag_findings: frozenset[str]) -> None:
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
            {"role": "system", "content": instructions(lang)["system"]},
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
        ask = instructions(lang)["rephrase"].format(template=template)
        out = await self._say(ask, lang, max_tokens=80)
        text, _ = guarded(out, template, lang)
        return text

    async def offscript(self, caller_text: str, question: str, lang: str, fallback: str) -> str:
        """A short, safe reply to an off-script turn that leads back to the pending question."""
        if not self.capable:
            return fallback
        ask = instructions(lang)["offscript"].format(caller_text=caller_text, question=question)
        out = await self._say(ask, lang)
        text, _ = guarded(out, fallback, lang)
        return text

    async def polish(self, summary: str, lang: str) -> str:
        """A nurse summary made more readable, facts unchanged; the template if anything trips."""
        if not self.capable:
            return summary
        ask = instructions(lang)["polish"].format(summary=summary)
        out = await self._say(ask, lang, max_tokens=300)
        text, _ = guarded(out, summary, lang)
        return text
