"""Tags of every call (自动化标签): `kind:id` strings from the call's findings and answers (chief
complaint, red flags, follow-up problem areas, outcome), with names in both languages from prompts/.
Stored as `call_tags` rows at call end (the recorder), filterable in the queue, in exports as FHIR
`meta.tag`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.orm import Session

from records.models import Call, CallTag
from voice.result import CallResult

TAGS_FILE = Path(__file__).resolve().parent.parent / "prompts" / "tags" / "tags.yaml"
TAG_SYSTEM = "urn:carecall:tag"


class TagsError(ValueError):
    """prompts/tags/tags.yaml is malformed; the message names the field."""


class _Names(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    en: str
    zh: str


class _Area(_Names):
    questions: list[str]


class _Outcome(_Names):
    end_reasons: list[str]


class TagData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kinds: dict[str, _Names]
    followup_areas: dict[str, _Area]
    outcomes: dict[str, _Outcome]


@dataclass(frozen=True, slots=True)
class Tag:
    kind: str
    id: str
    en: str
    zh: str

    @property
    def code(self) -> str:
        return f"{self.kind}:{self.id}"

    def name(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


def load_tag_data(path: Path = TAGS_FILE) -> TagData:
    try:
        return TagData.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise TagsError(f"{path}: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TagsError(f"{path}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc


@lru_cache(maxsize=1)
def tag_data() -> TagData:
    return load_tag_data()


def describe(code: str) -> Tag:
    """A tag code with its names in both languages (unknown ids keep their id as the name)."""
    from dialogue.protocols import knowledge

    kind, _, ident = code.partition(":")
    data, kn = tag_data(), knowledge()
    names: dict[str, str] = {}
    for lang in ("en", "zh"):
        if kind == "complaint" and ident in kn.protocol_text[lang]:
            names[lang] = kn.protocol_text[lang][ident].name
        elif kind == "red_flag" and ident in kn.phrases[lang].red_flags:
            names[lang] = kn.phrases[lang].red_flags[ident]
        elif kind == "followup" and ident in data.followup_areas:
            names[lang] = getattr(data.followup_areas[ident], lang)
        elif kind == "outcome" and ident in data.outcomes:
            names[lang] = getattr(data.outcomes[ident], lang)
        else:
            names[lang] = ident.replace("_", " ")
    return Tag(kind, ident, names["en"], names["zh"])


def tags_for(result: CallResult, red_flags: list[str], end_reason: str | None) -> list[Tag]:
    """The tags of one call, in a stable order: complaints, red flags, follow-up areas, outcome."""
    from dialogue.protocols import knowledge

    data = tag_data()
    codes: list[str] = []
    kn = knowledge()
    for pid in [result.chief_complaint, *(c.protocol for c in result.complaints)]:
        if pid in kn.protocols:
            codes.append(f"complaint:{pid}")
    known_flags = {rf.id for rf in kn.red_flags}  # not a nurse-level escalation ("escalation")
    for flag in [*red_flags, *result.red_flags]:
        if flag in known_flags:
            codes.append(f"red_flag:{flag}")
    alarmed = {a.question for a in result.answers if a.alarm} | set(result.alarms)
    for area, spec in data.followup_areas.items():
        if alarmed & set(spec.questions):
            codes.append(f"followup:{area}")
    for name, outcome in data.outcomes.items():
        if end_reason in outcome.end_reasons:
            codes.append(f"outcome:{name}")
    return [describe(c) for c in dict.fromkeys(codes)]


def store_tags(session: Session, call: Call) -> list[Tag]:
    tags = tags_for(call.call_result, [r.flag for r in call.red_flags], call.end_reason)
    call.tags.clear()
    session.flush()
    for t in tags:
        call.tags.append(CallTag(tag=t.code, kind=t.kind))
    return tags
