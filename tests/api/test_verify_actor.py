"""`verify_actor`: the roster check for actors named in Temporal UI/CLI signals."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.activities.actors import check_actor
from taflow.db.credentials import DEV_EXPERT_ID
from taflow.domain.enums import Role
from taflow.domain.models import Actor


async def test_the_roster_knows_who_holds_a_key(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    async with sessionmaker() as s:
        assert (
            await check_actor(s, Actor(subject="asec-head", organisation="ASEC", role=Role.asec_head))
        ).known
        assert (
            await check_actor(s, Actor(subject="kh-coordinator", organisation="KH", role=Role.requester))
        ).known
        assert (
            await check_actor(s, Actor(subject=DEV_EXPERT_ID, organisation="WCO", role=Role.expert))
        ).known
        stranger = await check_actor(s, Actor(subject="mallory", organisation="ASEC", role=Role.asec_head))
        assert not stranger.known and "no active credential" in stranger.reason
        other_role = await check_actor(
            s, Actor(subject="asec-reviewer", organisation="ASEC", role=Role.asec_head)
        )
        assert not other_role.known
        misfit = await check_actor(
            s, Actor(subject="kh-coordinator", organisation="ASEC", role=Role.requester)
        )
        assert not misfit.known and "cannot belong" in misfit.reason
