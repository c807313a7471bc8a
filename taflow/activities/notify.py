"""Notifications that need secrets the workflow must not hold (invitation link tokens)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.invitations import issue_token
from taflow.db.projection import write_notifications
from taflow.domain.models import InvitationTokenRequest, Notification


class NotifyActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], public_base_url: str) -> None:
        self._sessions = sessionmaker
        self._base = public_base_url.rstrip("/")

    @activity.defn
    async def issue_invitation_link(self, req: InvitationTokenRequest) -> None:
        """Create the expert's single-use link and queue the invitation, in one transaction.

        The token never enters workflow history and expires with the response deadline; a retry
        finds the token issued and does nothing.
        """
        async with self._sessions.begin() as session:
            token = await issue_token(
                session,
                invitation_id=req.invitation_id,
                request_id=req.request_id,
                expert_id=req.expert_id,
                expires_at=req.respond_by,
            )
            if token is None:
                return
            link = f"{self._base}/v1/invitations/{req.invitation_id}/response?token={token}"
            meeting = req.meeting
            await write_notifications(
                session,
                [
                    Notification(
                        request_id=req.request_id,
                        event_type="invitation.sent",
                        audience=[f"expert:{req.expert_id}", "ROCB-AP"],
                        payload={
                            "invitation_id": req.invitation_id,
                            "expert_id": req.expert_id,
                            "title": req.title,
                            "meeting": meeting.model_dump(mode="json") if meeting else None,
                            "respond_by": req.respond_by.isoformat(),
                            "response_link": link,
                        },
                        dedup_key=f"invitation:{req.invitation_id}",
                    )
                ],
            )
