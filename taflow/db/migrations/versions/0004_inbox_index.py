"""The inbox in its own order (due date, oldest change, id) per role waited on: no sort of the table.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_requests_inbox",
        "requests",
        ["waiting_on", "sla_due_at", "updated_at", "id"],
        postgresql_where=sa.text("waiting_on IS NOT NULL"),
    )
    for name, column, role in (("expert", "expert_id", "expert"), ("requester", "member_state", "requester")):
        op.create_index(
            f"ix_requests_inbox_{name}",
            "requests",
            [column, "sla_due_at", "updated_at", "id"],
            postgresql_where=sa.text(f"waiting_on = '{role}'"),
        )


def downgrade() -> None:
    op.drop_index("ix_requests_inbox_requester", table_name="requests")
    op.drop_index("ix_requests_inbox_expert", table_name="requests")
    op.drop_index("ix_requests_inbox", table_name="requests")
