"""Webhook dispatch: one long-lived dispatcher per task queue, one child workflow per delivery.

`OutboxDispatcherWorkflow` loops on a claim activity that fans new outbox rows out into deliveries
(one per matching subscription) and claims pending ones; for each it starts a
`WebhookDeliveryWorkflow` (abandoned on close, so the dispatcher never waits for a slow receiver)
whose activity carries the retry policy: exponential backoff up to `max_attempts`, then a dead letter.
A redelivery is a new generation of the same delivery, hence a new child id. Both decide only;
all I/O is in taflow.activities.webhooks.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from taflow.activities.webhooks import (
        ClaimRequest,
        DeadLetter,
        DeliveryInput,
        DispatchPolicy,
        WebhookActivities,
        delivery_workflow_id,
    )

HISTORY_LIMIT = 5000
"""Continue as new past this many events (or when the server suggests it)."""


@workflow.defn
class WebhookDeliveryWorkflow:
    @workflow.run
    async def run(self, job: DeliveryInput) -> str:
        p = job.policy
        workflow.set_current_details(
            f"Delivering webhook delivery {job.ref.delivery_id} (gen {job.ref.generation})"
        )
        try:
            outcome = await workflow.execute_activity_method(
                WebhookActivities.deliver_webhook,
                job.ref,
                start_to_close_timeout=timedelta(seconds=p.timeout_seconds + 30),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=p.initial_interval_seconds),
                    backoff_coefficient=2.0,
                    maximum_interval=timedelta(
                        seconds=max(p.max_interval_seconds, p.initial_interval_seconds)
                    ),
                    maximum_attempts=p.max_attempts,
                ),
            )
            return outcome.status
        except ActivityError as failure:
            cause = failure.cause
            reason = str(cause.message if cause is not None and hasattr(cause, "message") else failure)
            await workflow.execute_activity_method(
                WebhookActivities.dead_letter_webhook,
                DeadLetter(ref=job.ref, reason=f"retry budget spent ({p.max_attempts} attempts): {reason}"),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
            )
            return "dead"


@workflow.defn
class OutboxDispatcherWorkflow:
    @workflow.run
    async def run(self, policy: DispatchPolicy) -> None:
        workflow.set_current_details("Claiming outbox events and starting webhook deliveries")
        while True:
            claimed = await workflow.execute_activity_method(
                WebhookActivities.claim_webhook_work,
                ClaimRequest(
                    batch_size=policy.batch_size,
                    wait_seconds=policy.idle_wait_seconds,
                    poll_seconds=policy.poll_seconds,
                    lease_seconds=policy.lease_seconds,
                ),
                start_to_close_timeout=timedelta(seconds=policy.idle_wait_seconds + 60),
                heartbeat_timeout=timedelta(seconds=max(30.0, policy.poll_seconds * 10)),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
            for ref in claimed.deliveries:
                try:
                    await workflow.start_child_workflow(
                        WebhookDeliveryWorkflow.run,
                        DeliveryInput(ref=ref, policy=policy),
                        id=delivery_workflow_id(ref),
                        parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                        static_summary=f"Webhook delivery {ref.delivery_id}",
                    )
                except WorkflowAlreadyStartedError:
                    continue  # still retrying from an earlier claim (its lease ran out): leave it be
            info = workflow.info()
            if info.is_continue_as_new_suggested() or info.get_current_history_length() > HISTORY_LIMIT:
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(policy)
