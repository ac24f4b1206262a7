"""Single-use widget call tokens shared by every worker (issue 13): a token id is inserted once when
its call opens; a second insert (any worker) fails on the primary key, so the token is refused.

Revision ID: 0004_used_call_tokens
Revises: 0003_qa_tags
Create Date: 2026-12-02

Owned by records/shared_tokens.py. If another revision also follows 0002_campaigns when branches are
merged, re-point one of them (alembic refuses two heads).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_used_call_tokens"
down_revision = "0003_qa_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_call_tokens",
        sa.Column("token_id", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_used_call_tokens_expires_at", "used_call_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_used_call_tokens_expires_at", table_name="used_call_tokens")
    op.drop_table("used_call_tokens")
