"""Call records, reviews, users and the append-only audit log.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25

Campaign tables come in a later revision (revises this one); calls.campaign_id is already here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

SQLITE_AUDIT_TRIGGERS = (
    """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
       BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
)
POSTGRES_AUDIT_TRIGGERS = (
    """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$""",
    """CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
       FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
       FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(80), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("session_version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_login_at", TZ),
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("campaign_id", sa.String(64)),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ),
        sa.Column("end_reason", sa.String(200)),
        sa.Column("chief_complaint", sa.Text),
        sa.Column("disposition", sa.String(32)),
        sa.Column("override_disposition", sa.String(32)),
        sa.Column("urgency", sa.Integer, nullable=False),
        sa.Column("department", sa.String(120)),
        sa.Column("has_red_flags", sa.Boolean, nullable=False),
        sa.Column("summary", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("recording_path", sa.String(500)),
        sa.Column("recording_purged_at", TZ),
        sa.Column("reviewed_at", TZ),
        sa.Column("reviewed_by", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("callback_requested", sa.Boolean, nullable=False),
    )
    op.create_index("ix_calls_campaign_id", "calls", ["campaign_id"])
    op.create_index("ix_calls_started_at", "calls", ["started_at"])
    op.create_index("ix_calls_urgency", "calls", ["urgency"])
    op.create_index("ix_calls_has_red_flags", "calls", ["has_red_flags"])

    op.create_table(
        "turns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("speaker", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("heard_text", sa.Text),
        sa.Column("start_s", sa.Float, nullable=False),
        sa.Column("end_s", sa.Float, nullable=False),
        sa.Column("interrupted", sa.Boolean, nullable=False),
        sa.Column("endpoint_wait_ms", sa.Float),
        sa.Column("asr_ms", sa.Float),
        sa.Column("llm_first_token_ms", sa.Float),
        sa.Column("tts_first_audio_ms", sa.Float),
        sa.Column("voice_to_voice_ms", sa.Float),
        sa.Column("recorded_at", TZ, nullable=False),
        sa.UniqueConstraint("call_id", "idx", name="uq_turns_call_idx"),
    )
    op.create_index("ix_turns_call_id", "turns", ["call_id"])

    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("evidence", sa.Text),
        sa.Column("turn_idx", sa.Integer),
    )
    op.create_index("ix_findings_call_id", "findings", ["call_id"])

    op.create_table(
        "red_flags",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("flag", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("level", sa.String(32)),
        sa.Column("turn_idx", sa.Integer),
        sa.Column("raised_at", TZ, nullable=False),
    )
    op.create_index("ix_red_flags_call_id", "red_flags", ["call_id"])

    op.create_table(
        "followup_outcomes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item", sa.String(120), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("evidence", sa.Text),
        sa.Column("concern", sa.Boolean, nullable=False),
    )
    op.create_index("ix_followup_outcomes_call_id", "followup_outcomes", ["call_id"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("disposition_from", sa.String(32)),
        sa.Column("disposition_to", sa.String(32)),
        sa.Column("text", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_reviews_call_id", "reviews", ["call_id"])

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("user_id", sa.Integer),
        sa.Column("username", sa.String(80), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("call_id", sa.String(64)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("client", sa.String(64)),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_call_id", "audit_events", ["call_id"])

    dialect = op.get_bind().dialect.name
    triggers = {"sqlite": SQLITE_AUDIT_TRIGGERS, "postgresql": POSTGRES_AUDIT_TRIGGERS}.get(dialect)
    if triggers is None:
        raise RuntimeError(f"no append-only audit triggers for database {dialect!r}")
    for statement in triggers:
        op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("the audit log cannot be downgraded away; restore from a backup instead")
