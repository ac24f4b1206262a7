"""What the dialogue's pending question asks, for the simulated caller: the protocol question from
`TriageDialogue.pending_question()`, or, when the dialogue has a pending *check* (the emergency screen,
a confirmation of a suspected finding, a read-back: `dialogue.checks`), that check read by its fields.
Duck-typed on purpose: the evaluation kit must keep working while those parts change, and a check it
does not recognise falls back to the question text (counted by the caller)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Asked:
    id: str
    kind: str  # a protocol kind, or confirm | which | readback_number | readback_negation | readback_words
    findings: tuple[str, ...] = ()
    slot: str | None = None
    heard: float | None = None  # a read-back number as the dialogue heard it
    options: tuple[tuple[tuple[str, ...], str], ...] = ()  # "which one?": (findings, lay name) per option


def _item_findings(item: Any, *, general: bool = True) -> tuple[str, ...]:
    g = [item.general] if general and getattr(item, "general", None) else []
    return tuple(g + list(getattr(item, "findings", []) or []))


def _screen(d: Any, c: Any) -> Asked | None:
    data = getattr(getattr(d, "screen", None), "data", None)
    items = getattr(data, "items", None)
    if not isinstance(items, dict) or not all(i in items for i in c.items):
        return None
    its = [items[i] for i in c.items]
    if c.kind == "number":
        return Asked(f"screen.{c.items[0]}", "number", slot=getattr(its[0], "slot", None))
    if c.kind == "which":
        texts = getattr(getattr(data, "text", {}).get(getattr(d, "lang", "en")), "items", {}) or {}
        names = [getattr(texts.get(i), "phrase", "") or i for i in c.items]
        options = tuple((_item_findings(it), name) for it, name in zip(its, names, strict=True))
        return Asked("screen.which", "which", tuple(f for fs, _ in options for f in fs), options=options)
    if c.kind == "follow":  # the settling question: the specific findings, not the broad one
        specific = tuple(f for it in its for f in _item_findings(it, general=False))
        return Asked(f"screen.{c.items[0]}.follow", "yes_no", specific)
    return Asked(f"screen.{'+'.join(c.items)}", "yes_no", tuple(f for it in its for f in _item_findings(it)))


def pending_of(d: Any) -> Any | None:
    """The question awaiting the caller's answer (an `Asked` or a `PendingQuestion`), or None."""
    c = getattr(d, "check", None)
    if c is not None:
        if hasattr(c, "finding") and hasattr(c, "red_flag"):
            return Asked(f"confirm.{c.finding}", "confirm", (c.finding,))
        if hasattr(c, "items") and hasattr(c, "answer_kind"):
            return _screen(d, c)
        if hasattr(c, "key") and hasattr(c, "before"):
            if c.kind == "renumber":
                return Asked(f"readback.{c.key}", "number", slot=c.key)
            if c.kind == "number":
                facts = getattr(d, "facts", None)
                heard = facts.num(c.key) if facts is not None else None
                return Asked(f"readback.{c.key}", "readback_number", slot=c.key, heard=heard)
            if c.kind == "negation":
                return Asked(f"readback.{c.key}", "readback_negation", (c.key,))
            return Asked("readback.words", "readback_words")
        return None
    return d.pending_question() if hasattr(d, "pending_question") else None
