"""API keys: digests only, demo credentials idempotent and private, revocation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.credentials import (
    DEV_EXPERT_ID,
    authenticate,
    digest,
    ensure_dev_credentials,
    list_keys,
    revoke_key,
)
from taflow.db.models import ApiKeyRow
from taflow.domain.enums import MemberState, Role

SM = async_sessionmaker[AsyncSession]


async def test_dev_credentials_cover_every_role_and_are_private(sessionmaker: SM, tmp_path: Path) -> None:
    path = tmp_path / "dev-credentials.json"
    keys = await ensure_dev_credentials(sessionmaker, path)
    expected = {f"{m.value}/requester" for m in MemberState} | {
        "ASEC/asec_reviewer",
        "ASEC/asec_head",
        "ROCB-AP/rocb_officer",
        "WCO/expert",
        "ASEC/ops",
        "ASEC/admin",
    }
    assert set(keys) == expected
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == keys
    async with sessionmaker() as s:
        for name, key in keys.items():
            actor = await authenticate(s, key)
            assert actor is not None
            assert f"{actor.organisation}/{actor.role.value}" == name
        expert = await authenticate(s, keys["WCO/expert"])
        assert expert is not None and expert.subject == DEV_EXPERT_ID and expert.role is Role.expert
        stored = (await s.execute(select(ApiKeyRow.digest, ApiKeyRow.prefix))).all()
    digests = {row.digest for row in stored}
    assert all(digest(k) in digests for k in keys.values())
    assert not any(k in digests for k in keys.values())
    assert all(len(k) >= 40 and k.startswith("tf_") for k in keys.values())


async def test_dev_credentials_are_reused_and_repaired(sessionmaker: SM, tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    first = await ensure_dev_credentials(sessionmaker, path)
    again = await ensure_dev_credentials(sessionmaker, path)
    assert again == first
    async with sessionmaker() as s:
        info = next(k for k in await list_keys(s, "KH") if first["KH/requester"].startswith(k.prefix))
        assert await revoke_key(s, info.id)
        await s.commit()
        assert await authenticate(s, first["KH/requester"]) is None
    repaired = await ensure_dev_credentials(sessionmaker, path)
    assert repaired["KH/requester"] != first["KH/requester"]
    assert {k: v for k, v in repaired.items() if k != "KH/requester"} == {
        k: v for k, v in first.items() if k != "KH/requester"
    }
    assert json.loads(path.read_text()) == repaired


async def test_garbage_keys_are_refused(sessionmaker: SM) -> None:
    async with sessionmaker() as s:
        for key in ("", "tf_", "nope", "tf_" + "a" * 500, "tf_' OR 1=1 --"):
            assert await authenticate(s, key) is None
