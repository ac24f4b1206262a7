"""Outbound follow-up campaigns: campaigns, their contacts (the due work, claimed by dialler
workers) and every dialling attempt with its outcome.

Revision ID: 0002_campaigns
Revises: 0001_initial
Create Date: 2026-11-25

Owned by telephony/campaigns.py (which maps these tables); added as its own revision so the
records schema stays untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_campaigns"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("template", sa.String(120), nullable=False, server_default="discharge_followup"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default="Asia/Shanghai"),
        sa.Column("window_start", sa.String(5), nullable=False, server_default="09:00"),
        sa.Column("window_end", sa.String(5), nullable=False, server_default="20:00"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="3"),
        sa.Column("retry_backoff_s", sa.Integer, nullable=False, server_default="1800"),
        sa.Column("channel", sa.String(16), nullable=False, server_default="sip"),  # sip | carrier
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),  # active | paused
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "campaign_contacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("campaign_id", sa.String(64), sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),  # E.164; never logged
        sa.Column("language", sa.String(8), nullable=False, server_default="zh"),
        sa.Column("discharge_date", sa.Date),
        sa.Column("department", sa.String(120)),
        sa.Column("template", sa.String(120)),
        # due → dialling → done | exhausted (and back to due for a retry)
        sa.Column("status", sa.String(16), nullable=False, server_default="due"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("claimed_at", TZ),
        sa.Column("last_outcome", sa.String(32)),
        sa.UniqueConstraint("campaign_id", "phone", name="uq_campaign_contact_phone"),
    )
    op.create_index("ix_campaign_contacts_due", "campaign_contacts", ["status", "next_attempt_at"])
    op.create_table(
        "campaign_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "contact_id",
            sa.Integer,
            sa.ForeignKey("campaign_contacts.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("campaign_id", sa.String(64), nullable=False, index=True),
        sa.Column("number", sa.Integer, nullable=False),  # 1, 2, ... for this contact
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(64)),
        sa.Column("started_at", TZ, nullable=False),
        sa.Column("ended_at", TZ),
        # pending | completed | answered | machine | busy | no-answer | failed | rejected
        sa.Column("outcome", sa.String(32), nullable=False, server_default="pending"),
        sa.Column("sip_status", sa.Integer),
        sa.Column("carrier_sid", sa.String(64), index=True),
        sa.Column("call_id", sa.String(64)),  # the call record (calls.id) when answered
        sa.Column("detail", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("campaign_attempts")
    op.drop_index("ix_campaign_contacts_due", table_name="campaign_contacts")
    op.drop_table("campaign_contacts")
    op.drop_table("campaigns")
