"""A call out of CareCall: plain JSON, CSV (one row per turn) and a FHIR R4 `collection` Bundle
(Patient, Encounter, Observation per finding, Flag per red flag, RiskAssessment for the disposition,
ClinicalImpression for the SBAR summary, DocumentReference for the transcript)."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from records.models import Call
from records.tags import TAG_SYSTEM, describe
from voice.languages import languages


def tags_of(call: Call) -> list[dict[str, str]]:
    out = []
    for row in call.tags:
        tag = describe(row.tag)
        out.append({"code": tag.code, "kind": tag.kind, **tag.names})  # a name per language code
    return out


def fhir_tags(call: Call, lang: str) -> list[dict[str, str]]:
    """FHIR `meta.tag` Codings, displayed in the call's language."""
    tags = (describe(row.tag) for row in call.tags)
    return [{"system": TAG_SYSTEM, "code": tag.code, "display": tag.name(lang)} for tag in tags]


CSV_COLUMNS = (
    "call_id", "turn", "speaker", "start_s", "end_s", "text", "heard_text", "interrupted",
    "endpoint_wait_ms", "asr_ms", "llm_first_token_ms", "tts_first_audio_ms", "voice_to_voice_ms",
    "disposition", "department", "uncertain_words", "qa_result", "tags",
)  # fmt: skip
QA_SYSTEM = "urn:carecall:qa"
DISPOSITION_SYSTEM = "urn:carecall:disposition"
CALL_ID_SYSTEM = "urn:carecall:call"
DISPOSITION_TEXT = {
    "emergency_ambulance": "Call an ambulance now",
    "emergency": "Go to the emergency department now",
    "consultation_24": "See a doctor within 24 hours",
    "consultation": "Book a clinic visit",
    "self_care": "Home care with safety-net advice",
}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def call_to_dict(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.id,
        "channel": call.channel,
        "language": call.language,
        "mode": call.mode,
        "campaign_id": call.campaign_id,
        "status": call.status,
        "started_at": _iso(call.started_at),
        "ended_at": _iso(call.ended_at),
        "end_reason": call.end_reason,
        "chief_complaint": call.chief_complaint,
        "disposition": call.disposition,
        "override_disposition": call.override_disposition,
        "effective_disposition": call.effective_disposition,
        "department": call.department,
        "summary": call.summary,
        "reviewed_at": _iso(call.reviewed_at),
        "callback_requested": call.callback_requested,
        "qa_result": call.qa_result,
        "qa": call.qa_report,
        "tags": tags_of(call),
        "red_flags": [
            {"flag": r.flag, "reason": r.reason, "level": r.level, "turn": r.turn_idx, "raised_at": _iso(r.raised_at)}
            for r in call.red_flags
        ],
        "findings": [
            {"name": f.name, "value": f.value, "evidence": f.evidence, "turn": f.turn_idx} for f in call.findings
        ],
        "followup_outcomes": [
            {"item": o.item, "value": o.value, "evidence": o.evidence, "concern": o.concern}
            for o in call.followup_outcomes
        ],
        "turns": [
            {
                "index": t.idx,
                "speaker": t.speaker,
                "text": t.text,
                "heard_text": t.heard_text,
                "start_s": t.start_s,
                "end_s": t.end_s,
                "interrupted": t.interrupted,
                "uncertain_words": t.uncertain_words or [],
                "metrics": {
                    "endpoint_wait_ms": t.endpoint_wait_ms,
                    "asr_ms": t.asr_ms,
                    "llm_first_token_ms": t.llm_first_token_ms,
                    "tts_first_audio_ms": t.tts_first_audio_ms,
                    "voice_to_voice_ms": t.voice_to_voice_ms,
                },
            }
            for t in call.turns
        ],
        "history": [
            {
                "kind": r.kind,
                "by": r.username,
                "at": _iso(r.created_at),
                "text": r.text,
                "disposition_from": r.disposition_from,
                "disposition_to": r.disposition_to,
            }
            for r in call.reviews
        ],
    }


def _safe_cell(value: Any) -> Any:
    """Spreadsheet formula injection: a caller's words starting with = + - @ stay text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def call_to_csv(call: Call) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    tags = " ".join(t.tag for t in call.tags)
    for t in call.turns:
        unsure = " ".join(
            f"{w.get('word')}" + (f"({w['p']:.2f})" if isinstance(w.get("p"), int | float) else "")
            for w in t.uncertain_words or []
        )
        row = (
            call.id, t.idx, t.speaker, t.start_s, t.end_s, t.text, t.heard_text or "", t.interrupted,
            t.endpoint_wait_ms, t.asr_ms, t.llm_first_token_ms, t.tts_first_audio_ms, t.voice_to_voice_ms,
            call.effective_disposition or "", call.department or "", unsure, call.qa_result or "", tags,
        )  # fmt: skip
        writer.writerow([_safe_cell(v) if v is not None else "" for v in row])
    return out.getvalue()


def _uuid(call: Call, kind: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"carecall:{call.id}:{kind}"))


def transcript_text(call: Call) -> str:
    lines = []
    for t in call.turns:
        text = t.heard_text if t.interrupted and t.heard_text else t.text
        lines.append(f"[{t.start_s:7.1f}s] {t.speaker}: {text}")
    return "\n".join(lines) + ("\n" if lines else "")


def call_to_fhir(call: Call) -> dict[str, Any]:
    """A FHIR R4 Bundle of type `collection`. References are `urn:uuid:` full URLs inside the bundle."""
    entries: list[dict[str, Any]] = []

    def add(kind: str, resource: dict[str, Any]) -> str:
        rid = _uuid(call, kind)
        resource = {"resourceType": resource.pop("resourceType"), "id": rid, **resource}
        entries.append({"fullUrl": f"urn:uuid:{rid}", "resource": resource})
        return f"urn:uuid:{rid}"

    params = call.params or {}
    patient: dict[str, Any] = {"resourceType": "Patient"}
    patient_id = params.get("patient_id") or params.get("mrn")
    if patient_id:
        patient["identifier"] = [{"system": "urn:carecall:patient", "value": str(patient_id)}]
    subject = {"reference": add("patient", patient)}

    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": CALL_ID_SYSTEM, "value": call.id}],
        "status": "finished" if call.status == "ended" else "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "VR",
            "display": "virtual",
        },
        "type": [{"text": "telephone triage" if call.mode == "triage" else "post-discharge follow-up call"}],
        "subject": subject,
        "period": {k: v for k, v in (("start", _iso(call.started_at)), ("end", _iso(call.ended_at))) if v},
    }
    if call.chief_complaint:
        encounter["reasonCode"] = [{"text": call.chief_complaint}]
    tag_codings = fhir_tags(call, call.language)
    if tag_codings:
        encounter["meta"] = {"tag": tag_codings}
    enc = {"reference": add("encounter", encounter)}
    when = _iso(call.ended_at or call.started_at)

    observations = []
    for i, f in enumerate(call.findings):
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f.name},
            "subject": subject,
            "encounter": enc,
            "effectiveDateTime": when,
        }
        if f.value is not None:
            obs["valueString"] = f.value
        if f.evidence:
            obs["note"] = [{"text": f"Caller said: {f.evidence}"}]
        observations.append({"reference": add(f"finding-{i}", obs)})
    for i, o in enumerate(call.followup_outcomes):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "survey",
                        }
                    ]
                }
            ],
            "code": {"text": o.item},
            "subject": subject,
            "encounter": enc,
            "effectiveDateTime": when,
            "interpretation": [{"text": "needs attention" if o.concern else "no concern"}],
        }
        if o.value is not None:
            obs["valueString"] = o.value
        if o.evidence:
            obs["note"] = [{"text": f"Caller said: {o.evidence}"}]
        observations.append({"reference": add(f"outcome-{i}", obs)})

    flags = []
    for i, r in enumerate(call.red_flags):
        flag: dict[str, Any] = {
            "resourceType": "Flag",
            "status": "active",
            "category": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical"}]}
            ],
            "code": {"text": r.flag + (f": {r.reason}" if r.reason else "")},
            "subject": subject,
            "encounter": enc,
            "period": {"start": _iso(r.raised_at)},
        }
        flags.append({"reference": add(f"flag-{i}", flag)})

    disposition = call.effective_disposition
    if disposition:
        risk: dict[str, Any] = {
            "resourceType": "RiskAssessment",
            "status": "amended" if call.override_disposition else "final",
            "subject": subject,
            "encounter": enc,
            "occurrenceDateTime": when,
            "method": {"text": "CareCall telephone triage protocol"},
            "basis": observations + flags,
            "prediction": [
                {
                    "outcome": {
                        "coding": [
                            {
                                "system": DISPOSITION_SYSTEM,
                                "code": disposition,
                                "display": DISPOSITION_TEXT.get(disposition, disposition),
                            }
                        ],
                        "text": DISPOSITION_TEXT.get(disposition, disposition),
                    },
                    "qualitativeRisk": {"text": disposition},
                }
            ],
        }
        if not risk["basis"]:
            del risk["basis"]
        notes = [f"Department: {call.department}"] if call.department else []
        for r in call.reviews:
            if r.kind == "override":
                notes.append(f"Overridden by {r.username} from {r.disposition_from} to {r.disposition_to}: {r.text}")
        if notes:
            risk["note"] = [{"text": n} for n in notes]
        add("disposition", risk)

    if call.summary:
        sbar = "\n".join(f"{k.capitalize()}: {v}" for k, v in call.summary.items() if v)
        impression: dict[str, Any] = {
            "resourceType": "ClinicalImpression",
            "status": "completed",
            "subject": subject,
            "encounter": enc,
            "effectiveDateTime": when,
            "description": "SBAR summary of the call",
            "summary": sbar,
        }
        if observations:
            impression["finding"] = [{"itemReference": ref} for ref in observations]
        add("summary", impression)

    if call.qa_report:
        add("qa", _qa_observation(call, subject, enc, when))

    if call.turns:
        add(
            "transcript",
            {
                "resourceType": "DocumentReference",
                "status": "current",
                "type": {"text": "Call transcript"},
                "subject": subject,
                "date": _iso(call.ended_at or call.started_at),
                "description": f"Transcript of CareCall call {call.id}",
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain; charset=utf-8",
                            "language": languages.or_fallback(call.language).code,
                            "data": base64.b64encode(transcript_text(call).encode()).decode(),
                            "title": "transcript.txt",
                        }
                    }
                ],
                "context": {"encounter": [enc]},
            },
        )

    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": _uuid(call, "bundle"),
        "type": "collection",
        "timestamp": _iso(datetime.now(UTC)),
        "entry": entries,
    }
    if tag_codings:
        bundle["meta"] = {"tag": tag_codings}
    return bundle


def _qa_observation(call: Call, subject: dict[str, str], enc: dict[str, str], when: str | None) -> dict[str, Any]:
    """The conversation QA report as one Observation: the overall result, a component per check."""
    report = call.qa_report or {}
    components = []
    for c in report.get("checks", []):
        evidence = "; ".join(
            (f"turn {e['turn']}: " if e.get("turn") is not None else "") + str(e.get("words", ""))
            for e in c.get("evidence", [])
        )
        components.append(
            {
                "code": {"coding": [{"system": QA_SYSTEM, "code": c["check"]}], "text": c["check"]},
                "valueCodeableConcept": {"coding": [{"system": QA_SYSTEM, "code": c["result"]}], "text": c["summary"]},
                **({"interpretation": [{"text": evidence[:1000]}]} if evidence else {}),
            }
        )
    return {
        "resourceType": "Observation",
        "status": "final",
        "meta": {"tag": [{"system": QA_SYSTEM, "code": "conversation-qa"}]},
        "code": {"coding": [{"system": QA_SYSTEM, "code": "conversation-qa"}], "text": "Conversation QA of the call"},
        "subject": subject,
        "encounter": enc,
        "effectiveDateTime": when,
        "valueCodeableConcept": {"coding": [{"system": QA_SYSTEM, "code": report.get("result", "")}]},
        "component": components,
    }
