"""Every write of a request's read-model row is announced (NOTIFY taflow_request_changed, payload
`<id> <version>`), so API processes can wake callers waiting for that request to change instead of
having them poll.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION taflow_announce_request_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('taflow_request_changed', NEW.id || ' ' || NEW.version);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER requests_announce_change AFTER INSERT OR UPDATE ON requests "
        "FOR EACH ROW EXECUTE FUNCTION taflow_announce_request_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER requests_announce_change ON requests")
    op.execute("DROP FUNCTION taflow_announce_request_change()")
