"""Failed console sign-ins counted for every worker (issue 13): one row per throttle key (a digest of
account and/or address, no username), its failures and the time of the last one.

Revision ID: 0006_login_failures
Revises: 0005_user_totp
Create Date: 2026-12-03

Owned by records/login_failures.py (used with PostgreSQL; a single SQLite worker counts in memory).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_login_failures"
down_revision = "0005_user_totp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("key", sa.String(80), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure", sa.Float(), nullable=False),
    )
    op.create_index("ix_login_failures_last_failure", "login_failures", ["last_failure"])


def downgrade() -> None:
    op.drop_index("ix_login_failures_last_failure", table_name="login_failures")
    op.drop_table("login_failures")
