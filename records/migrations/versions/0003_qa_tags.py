"""Conversation QA (对话质检) and tags of every call: the QA report on the call, one row per check
(for filtering and pass rates), the recogniser's uncertain words per turn, and the call's tags.

Revision ID: 0003_qa_tags
Revises: 0002_campaigns
Create Date: 2026-12-02

Owned by records/qa and records/tags.py. Other revisions that also revise 0002 make a second head;
records.db.migrate upgrades every head, so they apply side by side.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_qa_tags"
down_revision = "0002_campaigns"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("qa_result", sa.String(8)))  # pass | warn | fail; NULL until the call ended
        batch.add_column(sa.Column("qa_report", sa.JSON))
        batch.add_column(sa.Column("qa_at", TZ))
        batch.create_index("ix_calls_qa_result", ["qa_result"])
    with op.batch_alter_table("turns") as batch:
        batch.add_column(sa.Column("uncertain_words", sa.JSON))  # [{"word", "p"}] from the recogniser
    op.create_table(
        "qa_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("check", sa.String(40), nullable=False),
        sa.Column("result", sa.String(8), nullable=False),  # pass | warn | fail | na
        sa.UniqueConstraint("call_id", "check", name="uq_qa_checks_call_check"),
    )
    op.create_index("ix_qa_checks_check_result", "qa_checks", ["check", "result"])
    op.create_table(
        "call_tags",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(64), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(80), nullable=False),  # kind:id, e.g. complaint:chest_pain
        sa.Column("kind", sa.String(24), nullable=False),  # complaint | red_flag | followup | disposition ...
        sa.UniqueConstraint("call_id", "tag", name="uq_call_tags_call_tag"),
    )
    op.create_index("ix_call_tags_tag", "call_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_call_tags_tag", table_name="call_tags")
    op.drop_table("call_tags")
    op.drop_index("ix_qa_checks_check_result", table_name="qa_checks")
    op.drop_table("qa_checks")
    with op.batch_alter_table("turns") as batch:
        batch.drop_column("uncertain_words")
    with op.batch_alter_table("calls") as batch:
        batch.drop_index("ix_calls_qa_result")
        batch.drop_column("qa_at")
        batch.drop_column("qa_report")
        batch.drop_column("qa_result")
