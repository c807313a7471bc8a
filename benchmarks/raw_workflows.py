"""The raw Temporal ceiling: workflows with empty bodies, run by their own worker process.

- `TrivialWorkflow` returns at once (figure 1 starts it).
- `BareLifecycle` has the *shape* of a real request's life, measured from real histories
  (`Shape.of_histories`, then `Shape.typical` of several): the same number of activities between
  the same waits (updates and the invitation child workflow), the same number of timers, signals
  and child-workflow updates, all empty. Figure 2 drives it with the same number of updates as the
  API driver sends.

`python -m benchmarks.raw_workflows --address HOST:PORT --task-queue Q` runs the worker until SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

WAIT = timedelta(days=1)
ACTIVITY_TIMEOUT = timedelta(seconds=30)


@dataclass
class Shape:
    """What one request's life is made of, counted from its recorded histories."""

    segments: list[int] = field(default_factory=lambda: [0])
    """Activities scheduled before each wait, and after the last one (len = len(waits) + 1)."""
    waits: list[str] = field(default_factory=list)
    """In order: "update" (a decision) or "child" (the invitation child workflow)."""
    timers: int = 0
    signals: int = 0
    child_activities: int = 0
    child_timers: int = 0
    child_updates: int = 0

    @property
    def activities(self) -> int:
        return sum(self.segments)

    @property
    def updates(self) -> int:
        return self.waits.count("update")

    @property
    def children(self) -> int:
        return self.waits.count("child")

    @classmethod
    def of_histories(
        cls, parent: WorkflowHistory | History, child: WorkflowHistory | History | None
    ) -> Shape:
        shape = cls()
        for event in parent.events:
            kind = event.WhichOneof("attributes")
            if kind == "activity_task_scheduled_event_attributes":
                shape.segments[-1] += 1
            elif kind == "workflow_execution_update_accepted_event_attributes":
                shape.waits.append("update")
                shape.segments.append(0)
            elif kind == "start_child_workflow_execution_initiated_event_attributes":
                shape.waits.append("child")
                shape.segments.append(0)
            elif kind == "timer_started_event_attributes":
                shape.timers += 1
            elif kind == "workflow_execution_signaled_event_attributes":
                shape.signals += 1
        for event in child.events if child is not None else []:
            kind = event.WhichOneof("attributes")
            if kind == "activity_task_scheduled_event_attributes":
                shape.child_activities += 1
            elif kind == "timer_started_event_attributes":
                shape.child_timers += 1
            elif kind == "workflow_execution_update_accepted_event_attributes":
                shape.child_updates += 1
        return shape

    @classmethod
    def typical(cls, shapes: Sequence[Shape]) -> Shape:
        """The usual life among several: the most common order of waits and, among the shapes with it,
        the median of every count (the lower one of an even sample). Medians taken segment by segment
        can add up to one activity more or less than the median life: the section prints both.
        One recorded life is not enough: the projection pump folds changes together as timing allows,
        so two lifecycles of the same path differ by a few projection activities (11 to 14 seen)."""
        waits = Counter(tuple(s.waits) for s in shapes).most_common(1)[0][0]
        alike = [s for s in shapes if tuple(s.waits) == waits]

        def median(values: Iterable[int]) -> int:
            return int(statistics.median_low(list(values)))

        return cls(
            segments=[median(s.segments[i] for s in alike) for i in range(len(waits) + 1)],
            waits=list(waits),
            timers=median(s.timers for s in alike),
            signals=median(s.signals for s in alike),
            child_activities=median(s.child_activities for s in alike),
            child_timers=median(s.child_timers for s in alike),
            child_updates=median(s.child_updates for s in alike),
        )


@activity.defn
async def noop() -> None:
    return None


@workflow.defn
class TrivialWorkflow:
    @workflow.run
    async def run(self) -> None:
        return None


class _Gate:
    """Waits that updates open one by one; an update early for its wait is held until it is reached."""

    def __init__(self) -> None:
        self.reached = -1
        self.opened = 0

    async def open_next(self) -> int:
        k = self.opened
        await workflow.wait_condition(lambda: self.reached >= k)
        self.opened += 1
        return k

    async def wait(self, k: int) -> None:
        self.reached = k
        await workflow.wait_condition(lambda: self.opened > k)


async def _activities(n: int) -> None:
    for _ in range(n):
        await workflow.execute_activity(noop, start_to_close_timeout=ACTIVITY_TIMEOUT)


async def _segment(n: int, timer: bool) -> asyncio.Task[None] | None:
    """`n` activities; with `timer`, a timer started with the last one (so it reaches history even
    when the decision it guards is already waiting, as the real workflow's SLA timers do)."""
    if not timer:
        await _activities(n)
        return None
    await _activities(max(n - 1, 0))
    started = asyncio.create_task(asyncio.sleep(WAIT.total_seconds()))
    await _activities(min(n, 1))
    return started


@workflow.defn
class BareChild:
    def __init__(self) -> None:
        self.gate = _Gate()

    @workflow.run
    async def run(self, shape: Shape) -> None:
        timer = await _segment(shape.child_activities, shape.child_timers > 0)
        for k in range(shape.child_updates):
            await self.gate.wait(k)
        if timer is not None:
            timer.cancel()

    @workflow.update
    async def decide(self) -> int:
        return await self.gate.open_next()


@workflow.defn
class BareLifecycle:
    def __init__(self) -> None:
        self.gate = _Gate()
        self.signals = 0

    @workflow.run
    async def run(self, shape: Shape) -> None:
        timers = shape.timers
        update = 0
        for i, wait in enumerate(shape.waits):
            timer = await _segment(shape.segments[i], timers > 0)
            timers -= 1
            if wait == "update":
                await self.gate.wait(update)
                update += 1
            else:
                await workflow.execute_child_workflow(
                    BareChild.run, shape, id=f"{workflow.info().workflow_id}-child"
                )
            if timer is not None:
                timer.cancel()
        await _activities(shape.segments[-1])
        await workflow.wait_condition(lambda: self.signals >= shape.signals)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def decide(self) -> int:
        return await self.gate.open_next()

    @workflow.signal
    def poke(self) -> None:
        self.signals += 1


async def drive_bare(client: Client, workflow_id: str, shape: Shape, task_queue: str) -> None:
    """One bare lifecycle, decided as fast as the workflow allows (the ceiling's driver)."""
    handle = await client.start_workflow(BareLifecycle.run, shape, id=workflow_id, task_queue=task_queue)
    for wait in shape.waits:
        if wait == "update":
            await handle.execute_update(BareLifecycle.decide)
            continue
        child = client.get_workflow_handle_for(BareChild.run, f"{workflow_id}-child")
        for _ in range(shape.child_updates):
            while True:
                try:
                    await child.execute_update(BareChild.decide)
                    break
                except RPCError as exc:  # not started yet
                    if exc.status is not RPCStatusCode.NOT_FOUND:
                        raise
                    await asyncio.sleep(0.05)
    for _ in range(shape.signals):
        await handle.signal(BareLifecycle.poke)
    await handle.result()


async def _serve(address: str, task_queue: str) -> None:
    from taflow.process import freeze_startup_heap  # not at the top: the sandbox re-runs that per workflow

    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[TrivialWorkflow, BareLifecycle, BareChild],
        activities=[noop],
    )
    freeze_startup_heap()
    await worker.run()


def main() -> None:
    p = argparse.ArgumentParser(description="the bare workflows' worker")
    p.add_argument("--address", required=True)
    p.add_argument("--task-queue", required=True)
    args = p.parse_args()
    from taflow.process import run_event_loop  # the same loop as our worker's: a like-for-like ceiling

    with contextlib.suppress(KeyboardInterrupt):
        run_event_loop(_serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
