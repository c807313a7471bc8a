"""API keys: random bearer secrets of which only the SHA-256 digest is stored.

A key names one organisation, one role and one subject, so every call the API forwards to a
workflow carries an `Actor` the workflow can check. A stolen database yields no usable key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import ApiKeyRow, InvitationTokenRow, OrganisationRow
from taflow.db.session import Executor
from taflow.domain.enums import MemberState, Organisation, Role
from taflow.domain.models import Actor

KEY_PREFIX = "tf_"
MAX_KEY_LENGTH = 200
"""Longer bearer strings are refused without a database round trip."""


def digest(secret: str) -> str:
    """SHA-256 hex digest: what is stored for API keys and invitation link tokens."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never the key itself."""

    id: int
    prefix: str
    organisation: str
    role: str
    subject: str
    label: str
    created_at: datetime
    revoked_at: datetime | None


class InvalidIdentity(ValueError):
    """A key that may not exist: a role its organisation cannot hold, an empty or overlong subject."""


def check_identity(organisation: str, role: Role, subject: str) -> None:
    from taflow.authz import ROLE_ORGANISATIONS

    if organisation not in ROLE_ORGANISATIONS[role]:
        allowed = ", ".join(sorted(ROLE_ORGANISATIONS[role]))
        raise InvalidIdentity(f"role {role.value} belongs to {allowed}, not {organisation}")
    if not subject.strip() or len(subject) > 120:
        raise InvalidIdentity("the subject (the person or system the key is for) must be 1-120 characters")


async def create_key(
    session: AsyncSession, organisation: str, role: Role | str, subject: str, label: str = ""
) -> str:
    """Store a new key's digest and return the key (shown once). The caller commits.

    Raises InvalidIdentity when the role does not fit the organisation (taflow.authz.ROLE_ORGANISATIONS).
    """
    role = Role(role)
    check_identity(organisation, role, subject)
    key = generate_key()
    session.add(
        ApiKeyRow(
            digest=digest(key),
            prefix=key[: len(KEY_PREFIX) + 6],
            organisation_id=organisation,
            role=role.value,
            subject=subject,
            label=label,
        )
    )
    await session.flush()
    return key


def plausible_key(key: str) -> bool:
    """Whether `key` looks like one of our API keys at all (else it is refused without a lookup)."""
    return key.startswith(KEY_PREFIX) and len(key) <= MAX_KEY_LENGTH


async def authenticate(session: AsyncSession, key: str) -> Actor | None:
    """The actor behind a key, or None for an unknown, revoked or malformed key (one indexed lookup)."""
    if not plausible_key(key):
        return None
    return await actor_of_digest(session, digest(key))


ACTIVE_KEY = select(ApiKeyRow.organisation_id, ApiKeyRow.role, ApiKeyRow.subject).where(
    ApiKeyRow.digest == bindparam("digest"), ApiKeyRow.revoked_at.is_(None)
)


async def actor_of_digest(db: Executor, key_digest: str) -> Actor | None:
    """The actor of the active key with this digest; None when unknown or revoked."""
    row = (await db.execute(ACTIVE_KEY, {"digest": key_digest})).one_or_none()
    if row is None:
        return None
    try:
        role = Role(row.role)
    except ValueError:
        return None
    return Actor(subject=row.subject, organisation=row.organisation_id, role=role)


def _info(r: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=r.id,
        prefix=r.prefix,
        organisation=r.organisation_id,
        role=r.role,
        subject=r.subject,
        label=r.label,
        created_at=r.created_at,
        revoked_at=r.revoked_at,
    )


async def list_keys(
    session: AsyncSession, organisation: str | None = None, *, include_revoked: bool = True
) -> list[ApiKeyInfo]:
    query = select(ApiKeyRow).order_by(ApiKeyRow.id)
    if organisation is not None:
        query = query.where(ApiKeyRow.organisation_id == organisation)
    if not include_revoked:
        query = query.where(ApiKeyRow.revoked_at.is_(None))
    return [_info(r) for r in (await session.execute(query)).scalars()]


async def rotate_key(
    session: AsyncSession, key_id: int, *, revoke_old: bool = True
) -> tuple[str, ApiKeyInfo] | None:
    """A new key for the same organisation, role, subject and label; the old one revoked (unless told
    to keep it for a changeover). None when `key_id` is unknown or already revoked. The caller commits."""
    old = (
        await session.execute(
            select(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None)).with_for_update()
        )
    ).scalar_one_or_none()
    if old is None:
        return None
    key = await create_key(session, old.organisation_id, old.role, old.subject, old.label)
    if revoke_old:
        old.revoked_at = datetime.now(UTC)
    new = (await session.execute(select(ApiKeyRow).where(ApiKeyRow.digest == digest(key)))).scalar_one()
    return key, _info(new)


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    """Revoke by id (keys are never deleted, so the audit keeps its subjects). The caller commits."""
    result = await session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .returning(ApiKeyRow.id)
    )
    return result.scalar_one_or_none() is not None


# ---------------------------------------------------------------------------- dev credentials

DEV_EXPERT_ID = "EXP-001"

ORGANISATION_KINDS: dict[str, str] = {
    **{m.value: "member_state" for m in MemberState},
    Organisation.ASEC.value: "secretariat",
    Organisation.ROCB_AP.value: "regional_office",
    Organisation.WCO.value: "international_organisation",
}


def dev_identities() -> dict[str, tuple[str, Role, str]]:
    """`"<org>/<role>"` -> (organisation, role, subject) for every demo credential of the dev stack."""
    out: dict[str, tuple[str, Role, str]] = {
        f"{m.value}/requester": (m.value, Role.requester, f"{m.value.lower()}-coordinator")
        for m in MemberState
    }
    others = [
        (Organisation.ASEC.value, Role.asec_reviewer, "asec-reviewer"),
        (Organisation.ASEC.value, Role.asec_head, "asec-head"),
        (Organisation.ROCB_AP.value, Role.rocb_officer, "rocb-officer"),
        (Organisation.WCO.value, Role.expert, DEV_EXPERT_ID),
        (Organisation.ASEC.value, Role.ops, "asec-ops"),
        (Organisation.ASEC.value, Role.admin, "asec-admin"),
    ]
    for org, role, subject in others:
        out[f"{org}/{role.value}"] = (org, role, subject)
    return out


async def ensure_organisations(session: AsyncSession, ids: list[str]) -> None:
    """Minimal organisation rows so keys can reference them; the reference seeder may enrich them."""
    rows = [{"id": i, "name": i, "kind": ORGANISATION_KINDS.get(i, "other")} for i in ids]
    if rows:
        await session.execute(
            insert(OrganisationRow).values(rows).on_conflict_do_nothing(index_elements=["id"])
        )


def _read_existing(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, str)}


def _write_private(path: Path, data: dict[str, str]) -> None:
    """Write via a 0600 temporary file and rename, so the keys are never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


async def ensure_dev_credentials(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path
) -> dict[str, str]:
    """Demo keys for every member state's requester and every other role, written to `path` (0600).

    Idempotent: keys already in the file that still authenticate as the same org/role are kept, so
    restarting the dev stack does not invalidate what a developer copied.
    """
    wanted = dev_identities()
    existing = _read_existing(path)
    result: dict[str, str] = {}
    async with sessionmaker() as session:
        await ensure_organisations(session, sorted({org for org, _, _ in wanted.values()}))
        for name, (org, role, subject) in wanted.items():
            key = existing.get(name)
            if key is not None:
                actor = await authenticate(session, key)
                if actor is not None and actor.organisation == org and actor.role is role:
                    result[name] = key
                    continue
            result[name] = await create_key(session, org, role, subject, label=f"dev {name}")
        await session.commit()
    if result != existing:
        _write_private(path, result)
    else:
        os.chmod(path, 0o600)
    return result


# ---------------------------------------------------------------------------- invitation link tokens


async def lock_invitation_token(session: AsyncSession, token: str) -> InvitationTokenRow | None:
    """The token's row, locked FOR UPDATE so two concurrent uses of one link cannot both succeed."""
    if not token or len(token) > MAX_KEY_LENGTH:
        return None
    return (
        await session.execute(
            select(InvitationTokenRow).where(InvitationTokenRow.digest == digest(token)).with_for_update()
        )
    ).scalar_one_or_none()
