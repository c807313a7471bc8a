"""Dedup retrieval filters by structure and text in one index scan (GiST: period or state and time,
with the tsvector's signature), so only rows that share a term with the request are read.

The btrees they replace, on (desired_start, desired_end) and (member_state, submitted_at), found every
request of the window and read each one to test its text: about 1,800 rows for 300 matches over the
period and 1,100 for 200 in a state's half year, at 100k stored requests.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = (
    "stage IN ('submitted', 'dedup_check', 'asec_review', 'changes_requested', 'rocb_matching', "
    "'on_hold', 'expert_invitation', 'scheduled', 'awaiting_report')"
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")  # GiST for text and timestamp columns
    op.execute(
        "CREATE INDEX ix_requests_dedup_state ON requests USING gist (member_state, submitted_at, search_vector)"
    )
    op.execute(
        "CREATE INDEX ix_requests_dedup_open ON requests "
        f"USING gist (daterange(desired_start, desired_end, '[]'), search_vector) WHERE {OPEN}"
    )
    op.drop_index("ix_requests_open_window", table_name="requests")
    op.drop_index("ix_requests_state_submitted", table_name="requests")


def downgrade() -> None:
    op.create_index("ix_requests_state_submitted", "requests", ["member_state", "submitted_at"])
    op.create_index(
        "ix_requests_open_window",
        "requests",
        ["desired_start", "desired_end"],
        postgresql_where=sa.text(OPEN),
    )
    op.drop_index("ix_requests_dedup_open", table_name="requests")
    op.drop_index("ix_requests_dedup_state", table_name="requests")
