"""Schema, append-only audit log, review queue, nurse actions, exports, retention purge and the
`carecall user` / `carecall records` commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from records import exports, repository
from records.db import open_database
from records.models import AuditEvent, Call
from records.recorder import CallRecorder
from records.recordings import purge_recordings, recording_file
from tests.records.simulate import SQL, XSS, quiet_call, triage_call


async def record(database, *calls):
    recorder = CallRecorder(database)
    for events in calls:
        for event in events:
            await recorder.on_event(event)
    await recorder.aclose()


def test_migrations_create_every_table_and_are_idempotent(empty_db_url):
    database = open_database(empty_db_url)
    db_url = empty_db_url
    tables = set(inspect(database.engine).get_table_names())
    assert {"calls", "turns", "findings", "red_flags", "followup_outcomes", "reviews", "users", "audit_events",
            "alembic_version"} <= tables  # fmt: skip
    again = open_database(db_url)  # a second start-up migrates nothing and breaks nothing
    with again.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == _head()
    again.dispose()
    if database.dialect == "sqlite":
        with database.engine.connect() as c:
            assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    database.dispose()


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from records.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_events SET action = 'nothing'", "DELETE FROM audit_events", "TRUNCATE audit_events"],
)
def test_audit_log_is_append_only_in_the_database(database, statement):
    if statement.startswith("TRUNCATE") and database.dialect == "sqlite":
        pytest.skip("SQLite has no TRUNCATE")
    with database.session() as s:
        repository.audit(s, "view_call", call_id="c1", detail={"n": 1})
    with pytest.raises(Exception, match="append-only"), database.engine.begin() as c:
        c.execute(text(statement))
    with database.session() as s:  # the ORM cannot either
        event = s.query(AuditEvent).one()
        assert event.action == "view_call"
    with pytest.raises(Exception, match="append-only"), database.session() as s:
        s.query(AuditEvent).one().action = "edited"
    with pytest.raises(Exception, match="append-only"), database.session() as s:
        s.delete(s.query(AuditEvent).one())
    with database.session() as s:
        assert [e.action for e in s.query(AuditEvent)] == ["view_call"]


async def test_review_queue_is_ordered_by_red_flags_then_urgency_and_filters(database):
    now = time.time()
    await record(
        database,
        quiet_call("self", "self_care", started_at=now - 50),
        quiet_call("consult", "consultation_24", department="Respiratory", started_at=now - 40),
        triage_call("flagged", started_at=now - 400),
        quiet_call("er", "emergency", started_at=now - 30, mode="followup", campaign="cardio-dec"),
        quiet_call("old", "consultation", started_at=now - 5 * 86400),
    )
    with database.session() as s:
        order = [c.id for c in repository.review_queue(s, repository.QueueFilter())]
        assert order == ["flagged", "er", "consult", "old", "self"]
        nurse = repository.create_user(s, "nina", "password123", "nurse")
        repository.mark_reviewed(s, s.get(Call, "er"), nurse)
    with database.session() as s:
        q = repository.QueueFilter

        def ids(**kw):
            return [c.id for c in repository.review_queue(s, q(**kw))]

        assert ids(reviewed=False) == ["flagged", "consult", "old", "self"]
        assert ids(reviewed=True) == ["er"]
        assert ids(disposition="consultation_24") == ["consult"]
        assert ids(department="Respiratory") == ["consult"]
        assert ids(mode="followup") == ["er"] and ids(campaign="cardio-dec") == ["er"]
        assert ids(red_flags_only=True) == ["flagged"]
        today = datetime.now(UTC).date()
        assert "old" not in ids(date_from=today - timedelta(days=1))
        assert ids(date_to=today - timedelta(days=2)) == ["old"]
        assert ids(department=SQL) == []  # bound parameters: a fragment is just an unknown value
        choices = repository.queue_choices(s)
        assert "Respiratory" in choices["departments"] and choices["campaigns"] == ["cardio-dec"]


async def test_nurse_actions_land_on_the_call_history(database):
    await record(database, triage_call("c1"))
    with database.session() as s:
        nurse = repository.create_user(s, "nina", "password123", "nurse")
        call = repository.get_call(s, "c1")
        with pytest.raises(repository.RecordsError, match="reason"):
            repository.override_disposition(s, call, nurse, "emergency", "  ")
        with pytest.raises(repository.RecordsError, match="disposition"):
            repository.override_disposition(s, call, nurse, "wait and see", "because")
        repository.override_disposition(s, call, nurse, "emergency", "caller already at the ED door")
        repository.add_note(s, call, nurse, "spoke to daughter")
        repository.request_callback(s, call, nurse, "tomorrow 9am")
        repository.mark_reviewed(s, call, nurse)
    with database.session() as s:
        call = repository.get_call(s, "c1")
        assert call.disposition == "emergency_ambulance" and call.effective_disposition == "emergency"
        assert call.reviewed_at is not None and call.callback_requested
        assert [(r.kind, r.username) for r in call.reviews] == [
            ("override", "nina"), ("note", "nina"), ("callback", "nina"), ("reviewed", "nina"),
        ]  # fmt: skip
        assert call.reviews[0].disposition_from == "emergency_ambulance"


def test_users_passwords_are_argon2_and_checked(database):
    with database.session() as s:
        user = repository.create_user(s, "ada", "correct horse", "admin")
        assert user.password_hash.startswith("$argon2")
        with pytest.raises(repository.RecordsError):
            repository.create_user(s, "ada", "another pass", "nurse")
        with pytest.raises(repository.RecordsError):
            repository.create_user(s, "bob", "short", "nurse")
        with pytest.raises(repository.RecordsError):
            repository.create_user(s, "bob", "long enough", "superuser")
    with database.session() as s:
        assert repository.authenticate(s, "ada", "correct horse").role == "admin"
        assert repository.authenticate(s, "ada", "wrong") is None
        assert repository.authenticate(s, "nobody", "correct horse") is None
        uid = repository.authenticate(s, "ada", "correct horse").id
        repository.update_user(s, uid, active=False)
    with database.session() as s:
        assert repository.authenticate(s, "ada", "correct horse") is None


async def test_exports_json_csv_and_fhir_r4(database):
    await record(database, triage_call("c1", params={"patient_id": "MRN-1"}))
    with database.session() as s:
        nurse = repository.create_user(s, "nina", "password123", "nurse")
        repository.override_disposition(s, repository.get_call(s, "c1"), nurse, "emergency", "already at ED")
    with database.session() as s:
        call = repository.get_call(s, "c1")
        as_json = json.loads(json.dumps(exports.call_to_dict(call)))
        rows = list(csv.DictReader(io.StringIO(exports.call_to_csv(call))))
        bundle = exports.call_to_fhir(call)
    assert as_json["effective_disposition"] == "emergency" and len(as_json["turns"]) == 5
    assert as_json["history"][0]["kind"] == "override"
    assert [r["speaker"] for r in rows] == ["bot", "caller", "bot", "caller", "bot"]
    assert XSS in rows[1]["text"] and rows[2]["voice_to_voice_ms"] == "932.0"
    assert exports._safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"

    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds.count("Observation") == 3 and kinds.count("Flag") == 1  # 2 findings + the QA report
    qa = next(e["resource"] for e in bundle["entry"] if e["resource"].get("meta", {}).get("tag", [{}])[0].get("code")
              == "conversation-qa")  # fmt: skip
    assert qa["valueCodeableConcept"]["coding"][0]["code"] == as_json["qa_result"] in ("pass", "warn", "fail")
    assert {c["code"]["text"] for c in qa["component"]} == {c["check"] for c in as_json["qa"]["checks"]}
    encounter = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    # "chest pain" is a name, not a protocol id: no tag; the protocol in `complaints` is one
    assert encounter["meta"]["tag"] == [{"system": "urn:carecall:tag", "code": "complaint:chest_pain",
                                         "display": "chest pain"}]  # fmt: skip
    assert [t["code"] for t in encounter["meta"]["tag"]] == [t["code"] for t in as_json["tags"]] != []
    assert rows[0]["qa_result"] == as_json["qa_result"] and rows[0]["tags"] == " ".join(
        t["code"] for t in as_json["tags"]
    )
    assert {"Patient", "Encounter", "RiskAssessment", "ClinicalImpression", "DocumentReference"} <= set(kinds)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
        for ref in _references(entry["resource"]):
            assert ref in urls, f"dangling reference {ref}"
    risk = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment")
    assert risk["prediction"][0]["outcome"]["coding"][0]["code"] == "emergency" and risk["status"] == "amended"
    doc = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    assert XSS in base64.b64decode(doc["content"][0]["attachment"]["data"]).decode()
    _validate_r4(bundle)


def _references(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference":
                yield v
            else:
                yield from _references(v)
    elif isinstance(node, list):
        for v in node:
            yield from _references(v)


def _validate_r4(bundle):
    """Full model validation with fhir.resources (a dev dependency). Its R4B models are the
    closest it ships to R4; every resource type used here is unchanged between R4 and R4B."""
    from fhir.resources.R4B.bundle import Bundle

    Bundle.model_validate(bundle)


async def test_purge_removes_recordings_past_retention(database, tmp_path):
    data_dir = tmp_path / "data"
    rec = data_dir / "recordings"
    rec.mkdir(parents=True)
    (rec / "old.wav").write_bytes(b"RIFF old")
    (rec / "new.wav").write_bytes(b"RIFF new")
    (rec / "stray.wav").write_bytes(b"RIFF stray")
    old_ts = time.time() - 40 * 86400
    os.utime(rec / "stray.wav", (old_ts, old_ts))
    await record(
        database,
        quiet_call("old", "consultation", started_at=old_ts),
        quiet_call("new", "consultation"),
    )
    with database.session() as s:
        for cid in ("old", "new"):
            s.get(Call, cid).recording_path = str(rec / f"{cid}.wav")
        s.get(Call, "old").ended_at = datetime.now(UTC) - timedelta(days=40)
    assert purge_recordings(database, data_dir, retention_days=30) == 2
    assert not (rec / "old.wav").exists() and not (rec / "stray.wav").exists() and (rec / "new.wav").exists()
    with database.session() as s:
        old = s.get(Call, "old")
        assert old.recording_purged_at is not None and recording_file(old, data_dir) is None
        assert recording_file(s.get(Call, "new"), data_dir) == (rec / "new.wav").resolve()
        assert [e.action for e in s.query(AuditEvent)] == ["recording_purged"]
    assert purge_recordings(database, data_dir, retention_days=30) == 0


async def test_recording_file_never_leaves_the_recordings_folder(database, tmp_path):
    await record(database, quiet_call("c1", "consultation"))
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"x")
    with database.session() as s:
        call = s.get(Call, "c1")
        call.recording_path = str(tmp_path / "data" / "recordings" / ".." / ".." / "secret.wav")
        assert recording_file(call, tmp_path / "data") is None


def test_cli_user_add_and_purge(tmp_path, monkeypatch):
    from cli import app

    monkeypatch.setenv("CARECALL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CARECALL_DATABASE_URL", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["user", "add", "--role", "admin", "--password-stdin", "root"], input="s3cret-pass\n")
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["user", "add", "--password-stdin", "root"], input="s3cret-pass\n")
    assert again.exit_code == 1 and "already exists" in again.output
    listed = runner.invoke(app, ["user", "list"])
    assert "root\tadmin\tactive" in listed.output
    assert "s3cret" not in listed.output
    purged = runner.invoke(app, ["records", "purge", "--days", "30"])
    assert purged.exit_code == 0 and "removed 0" in purged.output
    db = open_database(f"sqlite:///{tmp_path / 'carecall.db'}")
    with db.session() as s:
        assert repository.authenticate(s, "root", "s3cret-pass").role == "admin"
    # a call stored without a QA report (as before the QA migration): `records qa` backfills it
    for event in triage_call("old-call"):
        CallRecorder(db).write(event)
    with db.session() as s:
        call = s.get(Call, "old-call")
        expected_result = call.qa_result
        call.qa_result, call.qa_report = None, None
    assert expected_result in ("pass", "warn", "fail")
    backfill = runner.invoke(app, ["records", "qa"])
    assert backfill.exit_code == 0 and backfill.output.startswith("QA of 1 calls:"), backfill.output
    with db.session() as s:
        assert s.get(Call, "old-call").qa_result == expected_result
    assert runner.invoke(app, ["records", "qa"]).output.startswith("QA of 0 calls")
    assert runner.invoke(app, ["records", "qa", "--all"]).output.startswith("QA of 1 calls")
    db.dispose()
