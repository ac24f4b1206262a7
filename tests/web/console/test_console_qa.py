"""The console shows the QA reports and tags the recorder wrote: the queue filters and sorts by QA
result, by a failing check and by tag; the call page shows each check with its evidence and marks
the words the recogniser was unsure of; the exports carry the report and the tags."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from records.recorder import CallRecorder
from tests.records.conversations import CHEST_PAIN, CLEAN_TRIAGE, Script, scripted_call

XSS_WORD = "<i>x</i>"


@pytest.fixture
def qa_console(console):
    recorder = CallRecorder(console.services.database)
    lines = list(CLEAN_TRIAGE)
    lines[1] = f"I have had a sore throat for two days {XSS_WORD}"
    calls = [
        scripted_call("qa-ok", CLEAN_TRIAGE),
        scripted_call("qa-slow", CLEAN_TRIAGE, script=Script(latency_ms={4: 7000.0})),
        scripted_call("qa-cut", CHEST_PAIN, script=Script(interrupt_at={6: 0.25})),
        scripted_call("qa-word", lines, script=Script(uncertain={3: (("throat", 0.18), (XSS_WORD, 0.3))})),
    ]
    for events in calls:
        for event in events:
            recorder.write(event)
    return console


def ids(page: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*" data-call-id="([^"]+)"', page)


def test_queue_filters_and_sorts_by_qa_and_tags(qa_console):
    nurse = qa_console.client("nurse")
    failed = ids(nurse.get("/console/", params={"qa": "fail"}).text)
    assert {"qa-slow", "qa-cut"} <= set(failed) and "qa-ok" not in failed and "qa-word" not in failed
    assert ids(nurse.get("/console/", params={"qa_check": "latency"}).text) == ["qa-slow"]
    er = ids(nurse.get("/console/", params={"qa_check": "emergency_advice", "qa": "fail"}).text)
    assert "qa-cut" in er and "qa-ok" not in er and "qa-slow" not in er
    assert "qa-word" in ids(nurse.get("/console/", params={"qa_check": "uncertain_words"}).text)
    by_qa = ids(nurse.get("/console/", params={"sort": "qa"}).text)
    ranks = {cid: i for i, cid in enumerate(by_qa)}
    assert ranks["qa-cut"] < ranks["qa-word"] < ranks["qa-ok"] and ranks["qa-slow"] < ranks["qa-word"]
    tagged = ids(nurse.get("/console/", params={"tag": "complaint:sore_throat"}).text)
    assert set(tagged) == {"qa-ok", "qa-slow", "qa-word"}
    page = nurse.get("/console/").text
    assert 'value="complaint:sore_throat"' in page and "sore throat · 嗓子疼" in page
    assert 'class="qa-badge qa-fail"' in page
    for bad in ({"qa": "nonsense"}, {"qa_check": "<x>"}, {"sort": "1;drop"}, {"tag": "x" * 500}):
        assert nurse.get("/console/", params=bad).status_code == 200


def test_call_page_shows_the_report_with_evidence(qa_console):
    nurse = qa_console.client("nurse")
    page = nurse.get("/console/calls/qa-cut").text
    assert 'id="qa-result">fail<' in page
    row = re.search(r'<tr class="qa-check qa-fail" data-check="emergency_advice">.*?</tr>', page, re.S).group(0)
    assert "Emergency advice heard in full" in row and 'href="#turn-6"' in row and "cut off, caller heard only" in row
    assert 'data-check="consent"' in page and "Not applicable:" in page
    assert 'class="tag tag-red_flag"' in page


def test_unsure_words_are_marked_and_escaped(qa_console):
    page = qa_console.client("nurse").get("/console/calls/qa-word").text
    assert 'sore <mark class="unsure" title="recogniser unsure (p=0.18)">throat</mark> for' in page
    assert '<mark class="unsure" title="recogniser unsure (p=0.30)">&lt;i&gt;x&lt;/i&gt;</mark>' in page
    assert XSS_WORD not in page


def test_exports_carry_the_report_and_tags(qa_console):
    nurse = qa_console.client("nurse")
    data = json.loads(nurse.get("/console/calls/qa-slow/export.json").text)
    assert data["qa_result"] == "fail" and data["qa"]["result"] == "fail"
    latency = next(c for c in data["qa"]["checks"] if c["check"] == "latency")
    assert latency["evidence"] == [{"turn": 4, "words": "voice-to-voice 7000 ms (limit 5000 ms)"}]
    assert {"code": "complaint:sore_throat", "kind": "complaint"}.items() <= data["tags"][0].items()
    assert data["tags"][0]["zh"] and data["tags"][0]["en"]
    rows = list(csv.DictReader(io.StringIO(nurse.get("/console/calls/qa-word/export.csv").text)))
    assert rows[3]["uncertain_words"] == f"throat(0.18) {XSS_WORD}(0.30)" and rows[0]["qa_result"] == "warn"
    bundle = json.loads(nurse.get("/console/calls/qa-slow/export.fhir.json").text)
    assert {"system": "urn:carecall:tag", "code": "complaint:sore_throat"}.items() <= bundle["meta"]["tag"][0].items()
    qa = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"].get("code", {}).get("text") == "Conversation QA of the call"
    ]
    assert qa and qa[0]["valueCodeableConcept"]["coding"][0]["code"] == "fail"
