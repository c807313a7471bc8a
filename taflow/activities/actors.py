"""`verify_actor`: is the actor named in a Temporal UI/CLI signal someone TAflow knows?

The API fills `actor` from a verified credential, but a signal sent by hand names whoever the
operator typed. This activity checks it against the roster: an active API key with that subject,
organisation and role, or (for experts) an expert of that id. Identities that only ever sign in
with OIDC hold no key: operators acting for them name a key of the role the decision needs (an ASEC
head's for a review, say), since the workflow also checks the role. Workflows call it before a
signal acts (taflow.workflows.roster) and record a refused attempt when it says no.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow import authz
from taflow.db.models import ApiKeyRow, ExpertRow
from taflow.domain.enums import Role
from taflow.domain.models import Actor


class ActorVerdict(BaseModel):
    known: bool
    reason: str = ""


async def check_actor(session: AsyncSession, actor: Actor) -> ActorVerdict:
    if not authz.role_fits_organisation(actor.role, actor.organisation):
        return ActorVerdict(
            known=False, reason=f"role {actor.role.value} cannot belong to {actor.organisation}"
        )
    has_key = exists().where(
        ApiKeyRow.subject == actor.subject,
        ApiKeyRow.organisation_id == actor.organisation,
        ApiKeyRow.role == actor.role.value,
        ApiKeyRow.revoked_at.is_(None),
    )
    if (await session.execute(select(has_key))).scalar():
        return ActorVerdict(known=True)
    if actor.role is Role.expert and await session.get(ExpertRow, actor.subject) is not None:
        return ActorVerdict(known=True)
    return ActorVerdict(
        known=False,
        reason=f"no active credential for {actor.subject} as {actor.role.value} of {actor.organisation}",
    )


class ActorActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessionmaker

    @activity.defn
    async def verify_actor(self, actor: Actor) -> ActorVerdict:
        async with self._sessions() as session:
            return await check_actor(session, actor)
