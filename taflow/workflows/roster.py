"""The roster check for actors named in decision signals (Temporal UI/CLI), shared by the workflows.

The API names the actor from a verified credential; a signal names whoever the operator typed. Before
such a signal acts, `verify_actor` (taflow.activities.actors) must find that actor on the roster.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from taflow.activities.actors import ActorActivities
    from taflow.domain.models import Actor

SIGNAL_ROSTER_PATCH = "signal-actor-roster"
"""A decision signal applies only if its actor is on the roster (added after histories were recorded)."""
ROSTER_TIMEOUT = timedelta(seconds=10)
ROSTER_DEADLINE = timedelta(seconds=30)
"""How long a signal waits for the roster (the database) before it is refused: ops send it again.
Signals to one request take turns, so a later one waits for this one's answer too."""
ROSTER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=20))


def refusal(kind: str, message: str) -> ApplicationError:
    """A decision refused for good (`kind`: WrongStage, Forbidden, UnknownActor...): an update's
    validator raises it to the caller, a signal records it."""
    return ApplicationError(message, type=kind, non_retryable=True)


async def require_on_roster(actor: Actor) -> None:
    """Raise a non-retryable ApplicationError (`UnknownActor`, `RosterUnavailable`) unless the roster
    knows `actor`; callers record it as a refused signal."""
    try:
        verdict = await workflow.execute_activity_method(
            ActorActivities.verify_actor,
            actor,
            start_to_close_timeout=ROSTER_TIMEOUT,
            schedule_to_close_timeout=ROSTER_DEADLINE,
            retry_policy=ROSTER_RETRY,
        )
    except ActivityError:
        raise refusal("RosterUnavailable", "the roster could not be read: send the signal again") from None
    if not verdict.known:
        raise refusal("UnknownActor", f"{actor.subject} is not on the roster: {verdict.reason}")
