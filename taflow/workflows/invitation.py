"""ExpertInvitationWorkflow: one invitation of one expert, answered or expired by its deadline."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from taflow.activities.notify import NotifyActivities
    from taflow.domain.enums import InvitationStatus, Role
    from taflow.domain.models import (
        SYSTEM_ACTOR,
        InvitationInput,
        InvitationOutcome,
        InvitationResponse,
        InvitationTokenRequest,
    )
    from taflow.workflows.roster import SIGNAL_ROSTER_PATCH, require_on_roster


@workflow.defn
class ExpertInvitationWorkflow:
    @workflow.init
    def __init__(self, invitation: InvitationInput) -> None:
        self._in = invitation
        self._outcome: InvitationOutcome | None = None
        # decided before any handler runs: a signal may come with the first task (see the request's)
        self._roster = workflow.patched(SIGNAL_ROSTER_PATCH)

    @workflow.run
    async def run(self, invitation: InvitationInput) -> InvitationOutcome:
        workflow.set_current_details(
            f"Waiting for {invitation.expert_id} to answer by {invitation.respond_by.isoformat()}"
        )
        await workflow.execute_activity_method(
            NotifyActivities.issue_invitation_link,
            InvitationTokenRequest(
                invitation_id=invitation.invitation_id,
                request_id=invitation.request_id,
                expert_id=invitation.expert_id,
                title=invitation.title,
                meeting=invitation.meeting,
                respond_by=invitation.respond_by,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
        remaining = invitation.respond_by - workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self._outcome is not None, timeout=max(remaining, timedelta(seconds=1))
            )
        except TimeoutError:
            self._close(InvitationStatus.expired, "no answer by the deadline", None)
        except asyncio.CancelledError:
            self._close(InvitationStatus.cancelled, "the request left expert invitation", None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        assert self._outcome is not None
        workflow.set_current_details(f"{invitation.expert_id}: {self._outcome.status.value}")
        return self._outcome

    @workflow.query
    def status(self) -> InvitationOutcome:
        return self._outcome or InvitationOutcome(
            invitation_id=self._in.invitation_id,
            expert_id=self._in.expert_id,
            status=InvitationStatus.pending,
        )

    @workflow.update
    def respond(self, response: InvitationResponse) -> InvitationOutcome:
        self._check(response)
        return self._answer(response)

    @respond.validator
    def _validate_respond(self, response: InvitationResponse) -> None:
        self._check(response)

    @workflow.signal(name="response")
    async def response_signal(self, response: InvitationResponse) -> None:
        """An answer sent by ops (the API sends `respond`); its actor must hold a credential or be the
        invited expert. Checked again once the roster answers: the invitation may have closed."""
        try:
            self._check(response)
            if self._roster:
                assert response.actor is not None  # _check refuses an answer without one
                await require_on_roster(response.actor)
                self._check(response)
        except ApplicationError as refused:
            workflow.logger.warning("invitation answer refused: %s", refused.message)
            return
        self._answer(response)

    def _check(self, response: InvitationResponse) -> None:
        if self._outcome is not None:
            raise ApplicationError(
                f"invitation already {self._outcome.status.value}", type="WrongStage", non_retryable=True
            )
        actor = response.actor
        if actor is None:
            raise ApplicationError("the answer carries no actor", type="Forbidden", non_retryable=True)
        own = actor.role is Role.expert and actor.subject == self._in.expert_id
        if not (own or actor.role is Role.rocb_officer):
            raise ApplicationError(
                "only the invited expert or ROCB A/P may answer", type="Forbidden", non_retryable=True
            )

    def _answer(self, response: InvitationResponse) -> InvitationOutcome:
        status = InvitationStatus.accepted if response.accept else InvitationStatus.declined
        return self._close(status, response.comment, response)

    def _close(
        self, status: InvitationStatus, comment: str, response: InvitationResponse | None
    ) -> InvitationOutcome:
        self._outcome = InvitationOutcome(
            invitation_id=self._in.invitation_id,
            expert_id=self._in.expert_id,
            status=status,
            comment=comment,
            responded_by=(response.actor if response else None) or (None if response else SYSTEM_ACTOR),
            responded_at=workflow.now(),
        )
        return self._outcome
