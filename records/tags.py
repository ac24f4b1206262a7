"""Tags of every call (自动化标签): `kind:id` strings from the call's findings and answers (chief
complaint, red flags, follow-up problem areas, outcome), with names in every language from prompts/.
Stored as `call_tags` rows at call end (the recorder), filterable in the queue, in exports as FHIR
`meta.tag`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sqlalchemy.orm import Session

from records.models import Call, CallTag
from voice.languages import languages
from voice.result import CallResult

TAGS_FILE = Path(__file__).resolve().parent.parent / "prompts" / "tags" / "tags.yaml"
TAG_SYSTEM = "urn:carecall:tag"


class TagsError(ValueError):
    """prompts/tags/tags.yaml is malformed; the message names the field."""


class _Names(BaseModel):
    """Names by language code (`{en: ..., zh: ...}`). A language without its own is shown its
    `rules_from` language's, then the fallback's (`languages.pick`), so that one is required."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="after")
    def _by_language(self) -> _Names:
        given = self.model_extra or {}
        unknown = [k for k in given if k not in languages]
        if unknown:
            raise ValueError(f"no language pack for {', '.join(unknown)}")
        if not all(isinstance(v, str) and v for v in given.values()):
            raise ValueError("a name is a non-empty string")
        if languages.fallback not in given:
            raise ValueError(f"a name in {languages.fallback} (the fallback language) is required")
        return self

    @property
    def names(self) -> dict[str, str]:
        return dict(self.model_extra or {})

    def name(self, lang: str) -> str:
        return languages.pick(self.names, lang)


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
    names: Mapping[str, str] = field(hash=False)  # by language code, one for every registered language

    @property
    def code(self) -> str:
        return f"{self.kind}:{self.id}"

    def name(self, lang: str) -> str:
        return languages.pick(self.names, lang)


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
    """A tag code with its names in every language (unknown ids keep their id as the name)."""
    from dialogue.knowledge import knowledge

    kind, _, ident = code.partition(":")
    data, kn = tag_data(), knowledge()
    names: dict[str, str] = {}
    for lang in languages:  # the protocols' and phrases' names are each language's own (prompts/<lang>/)
        if kind == "complaint" and ident in kn.protocol_text[lang]:
            names[lang] = kn.protocol_text[lang][ident].name
        elif kind == "red_flag" and ident in kn.phrases[lang].red_flags:
            names[lang] = kn.phrases[lang].red_flags[ident]
        elif kind == "followup" and ident in data.followup_areas:
            names[lang] = data.followup_areas[ident].name(lang)
        elif kind == "outcome" and ident in data.outcomes:
            names[lang] = data.outcomes[ident].name(lang)
        else:
            names[lang] = ident.replace("_", " ")
    return Tag(kind, ident, MappingProxyType(names))


def tags_for(result: CallResult, red_flags: list[str], end_reason: str | None) -> list[Tag]:
    """The tags of one call, in a stable order: complaints, red flags, follow-up areas, outcome."""
    from dialogue.knowledge import knowledge

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
