"""Decision signals as ops send them from the CLI (or the Temporal UI): validated before sending.

A signal is fire-and-forget: the workflow checks it as it would an update, and its actor against
the roster, and records a refusal in the audit trail (`refused`) instead of acting, so
`send_signal` waits for the new state and says which happened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client

from taflow.domain.enums import Role
from taflow.domain.models import (
    Actor,
    Amendment,
    AsecDecision,
    AuditEvent,
    BeneficiaryAdded,
    Cancellation,
    Completion,
    Hold,
    InvitationResponse,
    Resumption,
    Retiming,
    RocbDecision,
    Withdrawal,
)
from taflow.ops.state import INVITATION_PREFIX, fetch_state, resolve_workflow_id

REQUEST_SIGNALS: dict[str, type[BaseModel]] = {
    "asec_review": AsecDecision,
    "amend": Amendment,
    "rocb_match": RocbDecision,
    "resume": Resumption,
    "complete": Completion,
    "withdraw": Withdrawal,
    "cancel": Cancellation,
    "hold": Hold,
    "retime": Retiming,
    "add_beneficiary": BeneficiaryAdded,
}
"""TARequestWorkflow's signals and their payloads (a test keeps this in step with the workflow)."""
INVITATION_SIGNALS: dict[str, type[BaseModel]] = {"response": InvitationResponse}


class SignalError(ValueError):
    """The signal cannot be sent as given (unknown name, invalid payload)."""


def parse_actor(spec: str) -> Actor:
    """`ORG/ROLE/SUBJECT` (e.g. `ASEC/asec_head/jdoe`): someone on the roster, since the workflow
    checks the actor there (an active API key with that subject and role; an expert by id)."""
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts):
        raise SignalError(
            f"actor {spec!r}: expected ORG/ROLE/SUBJECT, the subject of an active API key "
            "with that role (`taflow keys list`)"
        )
    try:
        role = Role(parts[1])
    except ValueError:
        raise SignalError(f"actor {spec!r}: unknown role {parts[1]!r}") from None
    return Actor(subject=parts[2], organisation=parts[0], role=role)


def build_message(wf_id: str, name: str, payload: dict[str, Any], actor: Actor | None) -> BaseModel:
    signals = INVITATION_SIGNALS if wf_id.startswith(INVITATION_PREFIX) else REQUEST_SIGNALS
    if name not in signals:
        raise SignalError(f"unknown signal {name!r}; one of: {', '.join(sorted(signals))}")
    if actor is not None and "actor" not in payload:
        payload = payload | {"actor": actor.model_dump()}
    try:
        return signals[name].model_validate(payload)
    except ValueError as exc:
        raise SignalError(f"invalid {name} payload: {exc}") from exc


@dataclass(frozen=True)
class SignalOutcome:
    workflow_id: str
    stage: str | None
    new_events: list[AuditEvent]

    @property
    def refused(self) -> bool:
        return any(e.kind == "refused" for e in self.new_events)


async def send_signal(
    client: Client,
    ref: str,
    name: str,
    payload: dict[str, Any],
    *,
    actor: Actor | None = None,
    wait_s: float = 5.0,
) -> SignalOutcome:
    """Validate, send, and (for a request) wait up to `wait_s` for the audit trail to show the result."""
    wf_id = resolve_workflow_id(ref)
    message = build_message(wf_id, name, payload, actor)
    handle = client.get_workflow_handle(wf_id)
    if wf_id.startswith(INVITATION_PREFIX):
        await handle.signal(name, message)
        return SignalOutcome(wf_id, None, [])
    before = await fetch_state(client, wf_id)
    last_seq = before.events[-1].seq if before.events else 0
    await handle.signal(name, message)
    deadline = time.monotonic() + wait_s
    state = before
    while time.monotonic() < deadline:
        state = await fetch_state(client, wf_id)
        if state.version != before.version:
            break
        await asyncio.sleep(0.2)
    return SignalOutcome(wf_id, state.stage.value, [e for e in state.events if e.seq > last_seq])
