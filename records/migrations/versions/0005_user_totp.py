"""Optional TOTP second factor for console staff: the user's base32 secret (NULL: not enrolled).

Revision ID: 0005_user_totp
Revises: 0004_used_call_tokens
Create Date: 2026-12-02

Owned by web/console/auth.py (issue 10, finding #7).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_user_totp"
down_revision = "0004_used_call_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("totp_secret", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("totp_secret")
