"""Index-backed dedup retrieval (expanded search text + GIN tsvector, term statistics), escalated flag.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = ", ".join(
    f"'{s}'"
    for s in (
        "submitted", "dedup_check", "asec_review", "changes_requested", "rocb_matching", "on_hold",
        "expert_invitation", "scheduled", "awaiting_report",
    )
)  # fmt: skip
"""Open stages, frozen as they were at this revision (the index predicate must not follow later code)."""
VECTOR = "array_to_tsvector(array_remove(string_to_array(search_text, ' '), ''))"


def upgrade() -> None:
    for table in ("requests", "catalogue_activities"):
        op.add_column(table, sa.Column("search_text", sa.Text(), nullable=False, server_default=""))
        op.add_column(
            table,
            sa.Column(
                "search_vector", postgresql.TSVECTOR(), sa.Computed(VECTOR, persisted=True), nullable=True
            ),
        )
    op.add_column("requests", sa.Column("escalated", sa.Boolean(), nullable=False, server_default="false"))
    op.create_index("ix_catalogue_search", "catalogue_activities", ["search_vector"], postgresql_using="gin")
    op.create_index("ix_requests_state_submitted", "requests", ["member_state", "submitted_at"])
    op.create_index(
        "ix_requests_open_window",
        "requests",
        ["desired_start", "desired_end"],
        postgresql_where=sa.text(f"stage IN ({OPEN})"),
    )
    op.create_table(
        "dedup_terms",
        sa.Column("term", sa.String(length=200), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("term"),
    )


def downgrade() -> None:
    op.drop_table("dedup_terms")
    op.drop_index("ix_requests_open_window", table_name="requests")
    op.drop_index("ix_requests_state_submitted", table_name="requests")
    op.drop_index("ix_catalogue_search", table_name="catalogue_activities")
    op.drop_column("requests", "escalated")
    for table in ("requests", "catalogue_activities"):
        op.drop_column(table, "search_vector")
        op.drop_column(table, "search_text")
