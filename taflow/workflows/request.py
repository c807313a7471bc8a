"""TARequestWorkflow: the single source of truth for one TA request's life.

It decides, never does I/O: activities check duplicates, propose matches and project every
transition into the read model. Decisions arrive as Updates (validated, so a wrong-stage decision
never enters history) from the API, or as signals from the Temporal UI/CLI (a refused signal is
recorded in the audit trail instead of acting).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from taflow.activities.deadlines import DeadlineActivities
    from taflow.activities.dedup import DedupActivities
    from taflow.activities.matching import MatchingActivities
    from taflow.activities.projection import ProjectionActivities
    from taflow.domain.enums import (
        AsecVerdict,
        DedupVerdict,
        InvitationStatus,
        RocbVerdict,
        Role,
        Stage,
    )
    from taflow.domain.models import (
        SYSTEM_ACTOR,
        Actor,
        Amendment,
        AsecDecision,
        AuditEvent,
        BeneficiaryAdded,
        Cancellation,
        Completion,
        CompletionRecord,
        DecisionResult,
        DedupCheckInput,
        Hold,
        InvitationInfo,
        InvitationInput,
        InvitationOutcome,
        MatchInfo,
        MatchInput,
        NewRequest,
        Projection,
        RequestState,
        Resumption,
        Retiming,
        RocbDecision,
        Withdrawal,
    )
    from taflow.domain.search_attributes import (
        TA_DUPLICATE,
        TA_ESCALATED,
        TA_MEMBER_STATE,
        TA_SLA_DUE_AT,
        TA_STAGE,
        TA_TOPICS,
    )
    from taflow.domain.sla import Breach, ClockRequest, ClockResume, StageClock
    from taflow.temporal import invitation_workflow_id, workflow_id
    from taflow.workflows.invitation import ExpertInvitationWorkflow
    from taflow.workflows.roster import SIGNAL_ROSTER_PATCH, refusal, require_on_roster

# Changes made after the first histories were recorded, each guarded for replay (tests/histories):
SLA_PATCH = "sla-clocks"
"""Deadlines on working-day calendars: reminders, escalation, expiry, hold (issue 4)."""
DEDUP_GATE_PATCH = "dedup-confirmation"
"""Approval waits until a suspected duplicate is confirmed or dismissed (issue 3)."""
FOUR_EYES_PATCH = "four-eyes"
"""Whoever submitted or amended a request cannot take its ASEC decision, by API or by signal (6)."""
MEMO_PATCH = "memo-client-reference"
"""An amendment that changes the requester's reference updates the memo ops read in the UI (7)."""
ROUNDS_PATCH = "donor-rounds-and-cutoffs"
"""on_hold ends at the next donor round; a missed agenda cut-off rolls over; overrides need a reason (5)."""
LEAN_PROJECTION_PATCH = "lean-projection"
"""The projection activity gets the state without its audit trail, plus the events it has not written:
its input no longer grows with every event of the request."""
LEAN_KEPT = ("dedup", "match", "invitations", "clock")
"""Parts of the state a lean projection leaves out while they stay as last projected (the row keeps them)."""
SEARCH_ATTRIBUTE_DIFF_PATCH = "search-attribute-diff"
"""Upserts carry only the search attributes whose values changed since the last one (none: no upsert)."""
BASELINE_PATCH = "baseline-2026-11-29"
"""Every change above (and the roster check) under one marker: the SDK writes a marker and a
`TemporalChangeVersion` upsert for each patch a new workflow takes, 16 events for the eight changes.
Workflows started before it keep deciding each change by its own marker. Later changes add their own
patch again, until the next baseline takes them in."""
BASELINE_2_PATCH = "baseline-2026-11-29b"
"""The baseline, and: an invitation reaches the read model only once its workflow has started, so the
expert (or ROCB A/P) who sees it there can answer it at once, never a 404 (`_invite`)."""
ACTIVITY_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=["InvalidInput"],
)

ASEC_DECIDERS = frozenset({Role.asec_reviewer, Role.asec_head})
COMPLETERS = frozenset({Role.rocb_officer, Role.asec_reviewer, Role.asec_head})
RESUMERS = frozenset({Role.rocb_officer, Role.asec_reviewer, Role.asec_head})

WAITING_DETAILS: dict[Stage, str] = {
    Stage.asec_review: "Waiting for ASEC review (approve, reject, request changes, duplicate, consolidate)",
    Stage.changes_requested: "Waiting for the requester's amendment",
    Stage.rocb_matching: "Waiting for ROCB A/P to confirm or override the expert match",
    Stage.on_hold: "On hold until the next donor round (ROCB A/P resumes it)",
    Stage.expert_invitation: "Waiting for the invited expert's answer",
    Stage.scheduled: "Expert confirmed; waiting for the meeting (or an early completion report)",
    Stage.awaiting_report: "Waiting for the completion report",
    Stage.dedup_check: "Checking for duplicate requests and catalogue activities",
}


@workflow.defn
class TARequestWorkflow:
    @workflow.init
    def __init__(self, request: NewRequest) -> None:
        self._s = RequestState(
            request_id=request.request_id,
            member_state=request.member_state,
            draft=request.draft,
            beneficiaries=_beneficiaries(request.member_state, request.draft.beneficiaries),
            spcd_priorities=list(request.draft.spcd_priorities),
            submitted_by=request.submitted_by,
            submitted_at=request.submitted_at,
            updated_at=request.submitted_at,
            invitation_response_days=request.invitation_response_days,
            history_limit=request.history_limit,
        )
        if request.resume is not None:  # continued as new: the whole state comes along, already projected
            self._s = request.resume
        self._projected_version = self._s.version if request.resume else -1
        self._projected_seq = self._s.events[-1].seq if request.resume and self._s.events else 0
        self._closing = False
        self._side_tasks: list[asyncio.Task[None]] = []
        # Which changes this run takes, decided here rather than in `run`: a signal delivered with the
        # run's first task is handled before `run` starts, and must already know (its roster check).
        self._announce_started = workflow.patched(BASELINE_2_PATCH)
        self._baseline = self._announce_started or workflow.patched(BASELINE_PATCH)
        if self._baseline:  # every change below at once, under one marker
            self._sla = self._dedup_gate = self._rounds = self._four_eyes = True
            self._lean = self._sa_diff = self._roster = True
        else:  # started before the baseline: each change as its own marker says
            self._sla = workflow.patched(SLA_PATCH)
            self._dedup_gate = workflow.patched(DEDUP_GATE_PATCH)
            self._rounds = workflow.patched(ROUNDS_PATCH)
            self._four_eyes = workflow.patched(FOUR_EYES_PATCH)
            self._lean = workflow.patched(LEAN_PROJECTION_PATCH)
            self._sa_diff = workflow.patched(SEARCH_ATTRIBUTE_DIFF_PATCH)
            self._roster = workflow.patched(SIGNAL_ROSTER_PATCH)
        self._signal_turn = asyncio.Lock()
        self._held = False
        """The read model waits: what it would show cannot be acted on yet (`_invite`)."""
        self._projected_parts: dict[str, Any] = {}
        """LEAN_KEPT parts as the read model has them (patch "lean-projection")."""
        self._sa_last: dict[str, Any] | None = None if request.resume else {}
        """Search attribute values as last upserted (a missing name: never set); None: not known."""
        self._details_last: str | None = None
        self._clock_dirty = False
        self._retime: Actor | None = None

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, request: NewRequest) -> RequestState:
        if request.resume is None:
            self._record(  # with "search-attribute-diff", the next record publishes both
                request.submitted_by,
                "submitted",
                to=Stage.submitted,
                comment=request.draft.title,
                publish=not self._sa_diff,
            )
            self._record(SYSTEM_ACTOR, "dedup_started", to=Stage.dedup_check)
        else:
            self._publish()
        pump = asyncio.create_task(self._projection_pump())
        while not self._s.stage.is_terminal:
            if self._sla and self._history_is_long():
                await self._drain(pump)
                self._s.runs += 1
                workflow.continue_as_new(request.model_copy(update={"resume": self._s}))
            stage = self._s.stage
            if stage is Stage.dedup_check:
                await self._check_duplicates()
            elif stage is Stage.rocb_matching and self._s.match is None:
                await self._propose_match()
            elif stage is Stage.expert_invitation:
                await self._invite_experts()
            elif stage is Stage.scheduled:
                await self._await_meeting()
            elif stage is Stage.on_hold and self._rounds:
                await self._await_donor_round()
            else:
                await self._wait_for_decision(stage)
        await self._drain(pump)
        return self._s

    async def _drain(self, pump: asyncio.Task[None]) -> None:
        """Finish handlers and side signals, flush the read model: before returning or continuing.

        A signal that arrives during the last flush may still be asking the roster once the flush is
        done (patch "signal-actor-roster"): it gets its answer and acts, and the read model is flushed
        again, so no decision is dropped by the run ending."""
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            await asyncio.gather(*self._side_tasks)
            self._closing = True
            await pump
            if not self._roster or (workflow.all_handlers_finished() and not self._dirty()):
                return
            self._closing = False
            pump = asyncio.create_task(self._projection_pump())

    def _history_is_long(self) -> bool:
        info = workflow.info()
        return (
            info.get_current_history_length() >= self._s.history_limit or info.is_continue_as_new_suggested()
        )

    async def _wait_for_decision(self, stage: Stage) -> None:
        if not self._sla:
            await workflow.wait_condition(lambda: self._s.stage != stage or self._needs_proposal())
            return
        clock = await self._ensure_clock(stage)
        timeout = None if clock is None or self._s.held else clock.time_to_alarm(workflow.now())
        try:
            await workflow.wait_condition(
                lambda: (
                    self._s.stage != stage
                    or self._needs_proposal()
                    or self._clock_dirty
                    or self._history_is_long()
                ),
                timeout=timeout,
            )
        except TimeoutError:
            self._alarm()

    # ------------------------------------------------------------ SLA clocks (patch "sla-clocks")

    def _clock_key(self, stage: Stage) -> tuple[str, str] | None:
        """The policy and the organisation whose calendar counts, for a stage that waits on a person."""
        if stage is Stage.asec_review:
            suspected = (
                self._s.dedup is not None and self._s.dedup.verdict is DedupVerdict.duplicate_suspected
            )
            return ("duplicate_confirmation" if suspected else "asec_review", "ASEC")
        owners = {
            Stage.changes_requested: self._s.member_state.value,
            Stage.rocb_matching: "ROCB-AP",
            Stage.awaiting_report: "ROCB-AP",
        }
        return (stage.value, owners[stage]) if stage in owners else None

    async def _ensure_clock(self, stage: Stage) -> StageClock | None:
        """Start, resume or re-time the waiting stage's clock; a held request's clock stands still."""
        self._clock_dirty = False
        key = self._clock_key(stage)
        clock = self._s.clock
        if key is None:
            return None
        now = workflow.now()
        if self._s.held:
            if clock is not None and clock.paused_at is None:
                clock.paused_at = now
                self._set_clock(clock)
            return clock
        if self._retime is not None and clock is not None:
            actor, self._retime = self._retime, None
            clock = await self._clock_activity(
                DeadlineActivities.start_clock,
                ClockRequest(
                    request_id=self._s.request_id,
                    policy_key=key[0],
                    stage=stage,
                    owner=key[1],
                    start=clock.started_at,
                ),
            )
            self._record(
                actor,
                "retimed",
                comment=f"{key[0]} due {clock.due_at.isoformat()}",
                data={"policy": clock.policy.model_dump(mode="json")},
            )
        elif clock is not None and clock.stage is stage:
            if clock.paused_at is None:
                return clock
            clock = await self._clock_activity(
                DeadlineActivities.resume_clock, ClockResume(clock=clock, at=now)
            )
        elif stage.value in self._s.paused_clocks:
            paused = self._s.paused_clocks.pop(stage.value)
            clock = await self._clock_activity(
                DeadlineActivities.resume_clock, ClockResume(clock=paused, at=now)
            )
        else:
            clock = await self._clock_activity(
                DeadlineActivities.start_clock,
                ClockRequest(
                    request_id=self._s.request_id, policy_key=key[0], stage=stage, owner=key[1], start=now
                ),
            )
        if self._s.stage is not stage:
            return None  # a decision arrived while the due date was being computed
        self._set_clock(clock)
        return clock

    async def _clock_activity(self, activity: Any, arg: Any) -> StageClock:
        result: StageClock = await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=ACTIVITY_RETRY
        )
        return result

    def _set_clock(self, clock: StageClock | None) -> None:
        self._s.clock = clock
        self._s.sla_due_at = clock.due_at if clock is not None and clock.paused_at is None else None
        self._touch()
        self._publish()

    def _alarm(self) -> None:
        """A reminder or the final deadline of the waiting stage has come."""
        clock = self._s.clock
        if clock is None:
            return
        data = {"policy_key": clock.policy_key, "owner": clock.owner, "due_at": clock.due_at.isoformat()}
        if clock.reminder_at is not None and not clock.reminded:
            clock.reminded = True
            self._record(
                SYSTEM_ACTOR, "reminder", comment=f"{clock.stage.value} is due {clock.due_at}", data=data
            )
            return
        clock.breached = True
        if clock.policy.on_breach is Breach.expire:
            self._record(
                SYSTEM_ACTOR,
                "expired",
                to=Stage.expired,
                comment="no answer by the final deadline",
                data=data,
            )
            return
        self._s.escalated = True
        to = clock.policy.escalate_to.value if clock.policy.escalate_to else "asec_head"
        self._record(
            SYSTEM_ACTOR,
            "escalated",
            comment=f"overdue since {clock.due_at}; escalated to {to}",
            data=data | {"escalate_to": to},
        )

    def _leave_stage(self, to: Stage) -> None:
        """Stop the clock of the stage being left; review's clock only pauses while the requester amends."""
        clock = self._s.clock
        if clock is None or clock.stage is to:
            return
        if clock.stage is Stage.asec_review and to is Stage.changes_requested and not clock.breached:
            self._s.paused_clocks[clock.stage.value] = clock.model_copy(update={"paused_at": workflow.now()})
        self._s.clock = None
        self._s.sla_due_at = None
        self._s.escalated = False

    def _needs_proposal(self) -> bool:
        return self._s.stage is Stage.rocb_matching and self._s.match is None

    # ------------------------------------------------------------ queries

    @workflow.query
    def status(self) -> RequestState:
        return self._s

    # ------------------------------------------------------------ updates (API)

    @workflow.update
    async def review(self, decision: AsecDecision) -> DecisionResult:
        self._check_review(decision)
        self._apply_review(decision)
        return await self._result()

    @review.validator
    def _validate_review(self, decision: AsecDecision) -> None:
        self._check_review(decision)

    @workflow.update
    async def amendment(self, amendment: Amendment) -> DecisionResult:
        self._check_amendment(amendment)
        self._apply_amendment(amendment)
        return await self._result()

    @amendment.validator
    def _validate_amendment(self, amendment: Amendment) -> None:
        self._check_amendment(amendment)

    @workflow.update
    async def match(self, decision: RocbDecision) -> DecisionResult:
        self._check_match(decision)
        self._apply_match(decision)
        return await self._result()

    @match.validator
    def _validate_match(self, decision: RocbDecision) -> None:
        self._check_match(decision)

    @workflow.update
    async def resumption(self, resumption: Resumption) -> DecisionResult:
        self._check_resumption(resumption)
        self._apply_resumption(resumption)
        return await self._result()

    @resumption.validator
    def _validate_resumption(self, resumption: Resumption) -> None:
        self._check_resumption(resumption)

    @workflow.update
    async def completion(self, completion: Completion) -> DecisionResult:
        self._check_completion(completion)
        self._apply_completion(completion)
        return await self._result()

    @completion.validator
    def _validate_completion(self, completion: Completion) -> None:
        self._check_completion(completion)

    @workflow.update
    async def withdrawal(self, withdrawal: Withdrawal) -> DecisionResult:
        self._check_withdrawal(withdrawal)
        self._apply_withdrawal(withdrawal)
        return await self._result()

    @withdrawal.validator
    def _validate_withdrawal(self, withdrawal: Withdrawal) -> None:
        self._check_withdrawal(withdrawal)

    @workflow.update
    async def cancellation(self, cancellation: Cancellation) -> DecisionResult:
        self._check_cancellation(cancellation)
        self._apply_cancellation(cancellation)
        return await self._result()

    @cancellation.validator
    def _validate_cancellation(self, cancellation: Cancellation) -> None:
        self._check_cancellation(cancellation)

    @workflow.update
    async def hold(self, hold: Hold) -> DecisionResult:
        self._check_hold(hold)
        self._apply_hold(hold)
        return await self._result()

    @hold.validator
    def _validate_hold(self, hold: Hold) -> None:
        self._check_hold(hold)

    @workflow.update
    async def retime(self, retiming: Retiming) -> DecisionResult:
        self._check_retime(retiming)
        self._apply_retime(retiming)
        return await self._result()

    @retime.validator
    def _validate_retime(self, retiming: Retiming) -> None:
        self._check_retime(retiming)

    # ------------------------------------------------------------ signals (Temporal UI / CLI)

    @workflow.signal(name="hold")
    async def hold_signal(self, hold: Hold) -> None:
        await self._from_signal(
            "hold", hold.actor, lambda: self._check_hold(hold), lambda: self._apply_hold(hold)
        )

    @workflow.signal(name="retime")
    async def retime_signal(self, retiming: Retiming) -> None:
        await self._from_signal(
            "retime",
            retiming.actor,
            lambda: self._check_retime(retiming),
            lambda: self._apply_retime(retiming),
        )

    @workflow.signal(name="asec_review")
    async def asec_review_signal(self, decision: AsecDecision) -> None:
        await self._from_signal(
            "asec_review",
            decision.actor,
            lambda: self._check_review(decision),
            lambda: self._apply_review(decision),
        )

    @workflow.signal(name="amend")
    async def amend_signal(self, amendment: Amendment) -> None:
        await self._from_signal(
            "amend",
            amendment.actor,
            lambda: self._check_amendment(amendment),
            lambda: self._apply_amendment(amendment),
        )

    @workflow.signal(name="rocb_match")
    async def rocb_match_signal(self, decision: RocbDecision) -> None:
        await self._from_signal(
            "rocb_match",
            decision.actor,
            lambda: self._check_match(decision),
            lambda: self._apply_match(decision),
        )

    @workflow.signal(name="resume")
    async def resume_signal(self, resumption: Resumption) -> None:
        await self._from_signal(
            "resume",
            resumption.actor,
            lambda: self._check_resumption(resumption),
            lambda: self._apply_resumption(resumption),
        )

    @workflow.signal(name="complete")
    async def complete_signal(self, completion: Completion) -> None:
        await self._from_signal(
            "complete",
            completion.actor,
            lambda: self._check_completion(completion),
            lambda: self._apply_completion(completion),
        )

    @workflow.signal(name="withdraw")
    async def withdraw_signal(self, withdrawal: Withdrawal) -> None:
        await self._from_signal(
            "withdraw",
            withdrawal.actor,
            lambda: self._check_withdrawal(withdrawal),
            lambda: self._apply_withdrawal(withdrawal),
        )

    @workflow.signal(name="cancel")
    async def cancel_signal(self, cancellation: Cancellation) -> None:
        await self._from_signal(
            "cancel",
            cancellation.actor,
            lambda: self._check_cancellation(cancellation),
            lambda: self._apply_cancellation(cancellation),
        )

    @workflow.signal(name="add_beneficiary")
    def add_beneficiary(self, added: BeneficiaryAdded) -> None:
        """A request consolidated into this one brings its member state along."""
        if self._s.stage.is_terminal:
            return
        if added.member_state not in self._s.beneficiaries:
            self._s.beneficiaries.append(added.member_state)
        self._record(
            added.actor or SYSTEM_ACTOR,
            "beneficiary_added",
            comment=f"{added.member_state.value} joins through consolidation of {added.from_request_id}",
            data={"member_state": added.member_state.value, "from_request_id": added.from_request_id},
        )

    async def _from_signal(
        self, name: str, actor: Actor | None, check: Callable[[], None], apply: Callable[[], None]
    ) -> None:
        """Checked as the update would be, and (patch "signal-actor-roster") the named actor against
        the roster, since anyone can type a name into the UI. A refusal is recorded instead of acting.

        Signals take their turn (a lock, first come first served), so each is checked on what the one
        before it did; the check runs again once the roster has answered, because an update or a
        deadline may have moved the request meanwhile."""
        if not self._roster:
            if self._admitted(name, actor, check) is not None:
                apply()
            return
        async with self._signal_turn:
            named = self._admitted(name, actor, check)
            if named is None:
                return
            try:
                await require_on_roster(named)
                check()
            except ApplicationError as refused:
                self._refuse_signal(name, named, refused)
                return
            apply()

    def _admitted(self, name: str, actor: Actor | None, check: Callable[[], None]) -> Actor | None:
        """The actor, if the signal names one and passes `check`; else None, the refusal recorded."""
        try:
            if actor is None:
                raise refusal("Forbidden", "a decision signal must name its actor")
            check()
        except ApplicationError as refused:
            self._refuse_signal(name, actor, refused)
            return None
        return actor

    def _refuse_signal(self, name: str, actor: Actor | None, refused: ApplicationError) -> None:
        self._record(
            actor or SYSTEM_ACTOR,
            "refused",
            comment=str(refused.message),
            data={"signal": name, "reason": refused.type or "Refused"},
        )

    # ------------------------------------------------------------ checks (validators, handlers, signals)

    def _expect(self, actor: Actor | None, stages: Iterable[Stage], roles: Iterable[Role]) -> Actor:
        if actor is None:
            raise refusal("Forbidden", "the decision carries no actor")
        if actor.role not in set(roles):
            raise refusal("Forbidden", f"role {actor.role.value} may not take this decision")
        allowed = set(stages)
        if self._s.stage not in allowed:
            names = ", ".join(sorted(s.value for s in allowed))
            raise refusal("WrongStage", f"request is at {self._s.stage.value}, expected {names}")
        return actor

    def _own_requester(self, actor: Actor | None) -> None:
        if actor is not None and actor.organisation != self._s.member_state.value:
            raise refusal("Forbidden", "only the requesting member state may do this")

    def _check_review(self, d: AsecDecision) -> None:
        actor = self._expect(d.actor, [Stage.asec_review], ASEC_DECIDERS)
        if self._four_eyes and actor.subject in self._parties():
            raise refusal(
                "Forbidden", "four-eyes: whoever submitted or amended a request cannot decide on it"
            )
        suspected = self._suspected_ids()
        if self._dedup_gate and d.decision is AsecVerdict.approve and suspected:
            raise refusal(
                "DuplicateUnresolved",
                f"confirm ('duplicate') or dismiss the suspected duplicate(s) first: {', '.join(suspected)}",
            )
        if d.decision is AsecVerdict.dismiss:
            unknown = set(d.dismissed) - {c.id for c in (self._s.dedup.candidates if self._s.dedup else [])}
            if not suspected and not d.dismissed:
                raise refusal("InvalidDecision", "no suspected duplicate to dismiss")
            if unknown:
                raise refusal(
                    "InvalidDecision", f"not a candidate of this request: {', '.join(sorted(unknown))}"
                )
        if d.decision is AsecVerdict.duplicate and d.duplicate_of == self._s.request_id:
            raise refusal("InvalidDecision", "a request cannot duplicate itself")
        if d.decision is AsecVerdict.consolidate and d.consolidate_into == self._s.request_id:
            raise refusal("InvalidDecision", "a request cannot be consolidated into itself")

    def _parties(self) -> set[str]:
        return {self._s.submitted_by.subject} | {
            e.actor.subject for e in self._s.events if e.kind == "amended"
        }

    def _suspected_ids(self) -> list[str]:
        dedup = self._s.dedup
        if dedup is None or dedup.verdict is not DedupVerdict.duplicate_suspected:
            return []
        return [c.id for c in dedup.candidates if c.relation is DedupVerdict.duplicate_suspected]

    def _check_amendment(self, a: Amendment) -> None:
        self._expect(a.actor, [Stage.changes_requested], [Role.requester])
        self._own_requester(a.actor)

    def _check_match(self, d: RocbDecision) -> None:
        self._expect(d.actor, [Stage.rocb_matching], [Role.rocb_officer])
        if self._rounds and d.decision is RocbVerdict.match and self._overrides(d) and not d.comment:
            raise refusal("InvalidDecision", "overriding the proposed experts needs a reason in `comment`")
        if d.decision is RocbVerdict.match and not self._invitees(d):
            raise refusal("InvalidDecision", "no expert to invite: name expert_ids or wait for a proposal")

    def _check_resumption(self, r: Resumption) -> None:
        self._expect(r.actor, [Stage.on_hold], RESUMERS)

    def _check_completion(self, c: Completion) -> None:
        self._expect(c.actor, [Stage.scheduled, Stage.awaiting_report], COMPLETERS)
        if c.delivered_on < self._s.submitted_at.date():
            raise refusal("InvalidDecision", "delivered_on is before the request was submitted")

    def _check_withdrawal(self, w: Withdrawal) -> None:
        self._expect(w.actor, _open_stages(), [Role.requester])
        self._own_requester(w.actor)

    def _check_cancellation(self, c: Cancellation) -> None:
        self._expect(c.actor, _open_stages(), ASEC_DECIDERS)

    def _check_hold(self, h: Hold) -> None:
        self._expect(h.actor, _open_stages(), ASEC_DECIDERS)
        if h.hold == self._s.held:
            raise refusal("WrongStage", "the request is already " + ("on hold" if h.hold else "running"))

    def _check_retime(self, r: Retiming) -> None:
        self._expect(r.actor, _open_stages(), [Role.ops, Role.asec_head])
        if self._s.clock is None:
            raise refusal("WrongStage", "no clock is running at this stage")

    def _overrides(self, d: RocbDecision) -> bool:
        proposed = [c.expert_id for c in self._s.match.candidates] if self._s.match else []
        return (
            bool(d.expert_ids)
            and list(dict.fromkeys(d.expert_ids or [])) != proposed[: len(d.expert_ids or [])]
        )

    def _invitees(self, d: RocbDecision) -> list[str]:
        if d.expert_ids:
            return list(dict.fromkeys(d.expert_ids))
        return [c.expert_id for c in self._s.match.candidates] if self._s.match else []

    # ------------------------------------------------------------ transitions

    def _apply_review(self, d: AsecDecision) -> None:
        actor = d.actor or SYSTEM_ACTOR
        if d.spcd_priorities:
            self._s.spcd_priorities = list(d.spcd_priorities)
        data: dict[str, Any] = {"decision": d.decision.value}
        if d.decision is AsecVerdict.approve:
            self._s.match = None
            self._record(actor, "approved", to=Stage.rocb_matching, comment=d.comment, data=data)
        elif d.decision is AsecVerdict.reject:
            self._record(actor, "rejected", to=Stage.rejected, comment=d.comment, data=data)
        elif d.decision is AsecVerdict.request_changes:
            self._record(actor, "changes_requested", to=Stage.changes_requested, comment=d.comment, data=data)
        elif d.decision is AsecVerdict.dismiss:
            self._dismiss(actor, d)
        elif d.decision is AsecVerdict.duplicate:
            self._s.duplicate_of = d.duplicate_of
            data["duplicate_of"] = d.duplicate_of
            self._record(actor, "duplicate_confirmed", to=Stage.duplicate, comment=d.comment, data=data)
        else:
            self._s.consolidated_into = d.consolidate_into
            data["consolidate_into"] = d.consolidate_into
            self._record(actor, "consolidated", to=Stage.consolidated, comment=d.comment, data=data)
            assert d.consolidate_into is not None
            self._notify_survivor(d.consolidate_into, actor)

    def _dismiss(self, actor: Actor, d: AsecDecision) -> None:
        """ASEC dismisses candidates: recorded, out of the verdict, never raised again for this request."""
        dedup = self._s.dedup
        assert dedup is not None
        ids = list(d.dismissed) or self._suspected_ids()
        self._s.dismissed_candidates = list(dict.fromkeys([*self._s.dismissed_candidates, *ids]))
        left = [c for c in dedup.candidates if c.id not in ids]
        verdict = DedupVerdict.clear
        if any(c.relation is DedupVerdict.duplicate_suspected for c in left):
            verdict = DedupVerdict.duplicate_suspected
        elif any(c.relation is DedupVerdict.consolidation_suggested for c in left):
            verdict = DedupVerdict.consolidation_suggested
        self._s.dedup = dedup.model_copy(
            update={
                "candidates": left,
                "verdict": verdict,
                "duplicate_of": dedup.duplicate_of if dedup.duplicate_of not in ids else None,
                "consolidate_with": [c for c in dedup.consolidate_with if c not in ids],
            }
        )
        self._record(
            actor, "duplicate_dismissed", comment=d.comment, data={"dismissed": ids, "verdict": verdict}
        )

    def _notify_survivor(self, survivor_id: str, actor: Actor) -> None:
        """The surviving request gains this beneficiary by a signal to its workflow."""
        added = BeneficiaryAdded(
            from_request_id=self._s.request_id, member_state=self._s.member_state, actor=actor
        )

        async def send() -> None:
            try:
                handle = workflow.get_external_workflow_handle(workflow_id(survivor_id))
                await handle.signal("add_beneficiary", added)
            except Exception as failure:  # the survivor may have closed meanwhile: record, never fail
                self._record(SYSTEM_ACTOR, "consolidation_signal_failed", comment=str(failure))

        self._side_tasks.append(asyncio.create_task(send()))

    def _apply_amendment(self, a: Amendment) -> None:
        changed = a.draft.client_reference != self._s.draft.client_reference
        if changed and (self._baseline or workflow.patched(MEMO_PATCH)):
            workflow.upsert_memo({"client_reference": a.draft.client_reference})
        self._s.draft = a.draft
        self._s.beneficiaries = _beneficiaries(self._s.member_state, a.draft.beneficiaries)
        self._s.dedup = None
        actor = a.actor or SYSTEM_ACTOR
        self._record(actor, "amended", to=Stage.dedup_check, comment=a.comment, data={"title": a.draft.title})

    def _apply_match(self, d: RocbDecision) -> None:
        actor = d.actor or SYSTEM_ACTOR
        if d.decision is RocbVerdict.no_match:
            self._record(actor, "no_match", to=Stage.on_hold, comment=d.comment)
            return
        match = self._s.match or MatchInfo()
        match.expert_ids = self._invitees(d)
        match.programme_id = d.programme_id or match.proposed_programme_id
        match.funding_partner = d.funding_partner or match.proposed_funding_partner
        match.comment = d.comment
        match.confirmed_by = actor
        self._s.match = match
        override = self._overrides(d)
        self._record(
            actor,
            "match_confirmed",
            to=Stage.expert_invitation,
            comment=d.comment,
            data={"expert_ids": match.expert_ids, "override": override, "programme_id": match.programme_id},
        )

    def _apply_hold(self, h: Hold) -> None:
        self._s.held = h.hold
        self._clock_dirty = True
        self._record(h.actor or SYSTEM_ACTOR, "held" if h.hold else "released", comment=h.comment)

    def _apply_retime(self, r: Retiming) -> None:
        self._retime = r.actor or SYSTEM_ACTOR
        self._clock_dirty = True

    def _apply_resumption(self, r: Resumption) -> None:
        self._s.match = None
        self._s.donor_round_at = None
        self._record(r.actor or SYSTEM_ACTOR, "resumed", to=Stage.rocb_matching, comment=r.comment)

    def _apply_completion(self, c: Completion) -> None:
        actor = c.actor or SYSTEM_ACTOR
        self._s.completion = CompletionRecord(
            report=c.report, delivered_on=c.delivered_on, recorded_by=actor, recorded_at=workflow.now()
        )
        self._record(
            actor,
            "completed",
            to=Stage.completed,
            comment=c.report[:500],
            data={"delivered_on": c.delivered_on.isoformat()},
        )

    def _apply_withdrawal(self, w: Withdrawal) -> None:
        self._record(w.actor or SYSTEM_ACTOR, "withdrawn", to=Stage.withdrawn, comment=w.reason)

    def _apply_cancellation(self, c: Cancellation) -> None:
        self._record(c.actor or SYSTEM_ACTOR, "cancelled", to=Stage.cancelled, comment=c.reason)

    def _record(
        self,
        actor: Actor,
        kind: str,
        *,
        to: Stage | None = None,
        comment: str = "",
        data: dict[str, Any] | None = None,
        publish: bool = True,
    ) -> None:
        """Append an audit event (and move to `to`); every change of state goes through here.

        `publish=False` only where another record follows in the same step (it publishes both)."""
        now = workflow.now()
        seq = self._s.events[-1].seq + 1 if self._s.events else 1
        from_stage = self._s.stage if to is not None and self._s.events else None
        self._s.events.append(
            AuditEvent(
                seq=seq,
                at=now,
                actor=actor,
                kind=kind,
                from_stage=from_stage,
                to_stage=to,
                comment=comment,
                data=data or {},
            )
        )
        if to is not None:
            if self._sla:
                self._leave_stage(to)
            self._s.stage = to
        self._s.updated_at = now
        self._s.version += 1
        if publish:
            self._publish()

    def _publish(self) -> None:
        """Search attributes and current details, so ops can find and read the request in the UI."""
        if self._sa_diff:
            self._upsert_changed()
        else:
            updates: list[SearchAttributeUpdate[Any]] = [
                TA_STAGE.value_set(self._s.stage.value),
                TA_MEMBER_STATE.value_set(self._s.member_state.value),
                TA_TOPICS.value_set([t.value for t in self._s.draft.topics]),
            ]
            duplicate = self._s.duplicate_of or self._suspected_duplicate()
            updates.append(TA_DUPLICATE.value_set(duplicate) if duplicate else TA_DUPLICATE.value_unset())
            if self._sla:
                due = self._s.sla_due_at
                updates.append(TA_SLA_DUE_AT.value_set(due) if due else TA_SLA_DUE_AT.value_unset())
                updates.append(TA_ESCALATED.value_set(self._s.escalated))
            workflow.upsert_search_attributes(updates)
        details = self._details()
        if details != self._details_last:  # not a command: only what the UI shows
            self._details_last = details
            workflow.set_current_details(details)

    def _upsert_changed(self) -> None:
        """Patch "search-attribute-diff": upsert only the values that changed since the last upsert."""
        s = self._s
        values: list[tuple[SearchAttributeKey[Any], Any]] = [
            (TA_STAGE, s.stage.value),
            (TA_MEMBER_STATE, s.member_state.value),
            (TA_TOPICS, [t.value for t in s.draft.topics]),
            (TA_DUPLICATE, s.duplicate_of or self._suspected_duplicate()),
        ]
        if self._sla:
            values += [(TA_SLA_DUE_AT, s.sla_due_at), (TA_ESCALATED, s.escalated)]
        last = self._sa_last
        updates: list[SearchAttributeUpdate[Any]] = []
        for key, value in values:
            value = value if value or value is False else None  # "" / [] / None: unset
            if last is not None and last.get(key.name) == value:
                continue
            updates.append(key.value_set(value) if value is not None else key.value_unset())
        if updates:
            workflow.upsert_search_attributes(updates)
        self._sa_last = {key.name: value if value or value is False else None for key, value in values}

    def _suspected_duplicate(self) -> str | None:
        dedup = self._s.dedup
        if dedup and dedup.verdict is DedupVerdict.duplicate_suspected and dedup.candidates:
            return dedup.candidates[0].id
        return None

    def _details(self) -> str:
        s = self._s
        lines = [f"**{s.request_id}** ({s.member_state.value}): {s.draft.title}", f"Stage: {s.stage.value}"]
        if s.stage in WAITING_DETAILS:
            lines.append(WAITING_DETAILS[s.stage])
        if s.sla_due_at is not None:
            lines.append(f"Due {s.sla_due_at.isoformat()}" + (" (ESCALATED)" if s.escalated else ""))
        if s.held:
            lines.append("On hold by ASEC: clocks stopped")
        if s.dedup and s.dedup.candidates and s.stage is Stage.asec_review:
            lines.append(f"Dedup verdict: {s.dedup.verdict.value}")
            lines += [f"- {c.id} ({c.relation.value}, score {c.score:.2f})" for c in s.dedup.candidates[:3]]
        if s.invitation and s.stage is Stage.expert_invitation:
            lines.append(
                f"Invited {s.invitation.expert_id}; answer due {s.invitation.respond_by.isoformat()}"
            )
        return "\n".join(lines)

    async def _result(self) -> DecisionResult:
        """Answer once the read model shows the decision (read-your-writes for the caller)."""
        version, stage = self._s.version, self._s.stage
        await workflow.wait_condition(lambda: self._projected_version >= version)
        return DecisionResult(request_id=self._s.request_id, stage=stage, version=version)

    # ------------------------------------------------------------ projection

    async def _projection_pump(self) -> None:
        """Single writer of the read model: ordered, idempotent (events upsert on (request, seq))."""
        while True:
            await workflow.wait_condition(lambda: self._dirty() or self._closing)
            if not self._dirty():
                return
            version = self._s.version
            projection, parts = self._lean_projection() if self._lean else (self._full_projection(), {})
            new_events = projection.new_events
            await workflow.execute_activity_method(
                ProjectionActivities.project_request,
                projection,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._projected_version = version
            self._projected_seq = new_events[-1].seq if new_events else self._projected_seq
            self._projected_parts.update(parts)

    def _full_projection(self) -> Projection:
        snapshot = self._s.model_copy(deep=True)
        new_events = [e for e in snapshot.events if e.seq > self._projected_seq]
        return Projection(state=snapshot, new_events=new_events)

    def _lean_projection(self) -> tuple[Projection, dict[str, Any]]:
        """Patch "lean-projection": the state without its audit trail and without the parts the read
        model has unchanged (LEAN_KEPT); the new events beside it. Also what it sends of LEAN_KEPT, to
        compare the next projection with once this one is written.

        The state is not copied: the activity's input is serialized as it is scheduled."""
        events = self._s.events
        start = len(events)
        while start and events[start - 1].seq > self._projected_seq:
            start -= 1
        entered = next((e for e in reversed(events[:start]) if e.to_stage is not None), None)
        kept: list[str] = []
        sent: dict[str, Any] = {}
        for name in LEAN_KEPT:
            value = getattr(self._s, name)
            if name in self._projected_parts and value == self._projected_parts[name]:
                kept.append(name)
            else:
                sent[name] = copy.deepcopy(value)
        left_out = {name: RequestState.model_fields[name].get_default() for name in kept}
        projection = Projection(
            state=self._s.model_copy(update={"events": [], **left_out}),
            new_events=events[start:],
            events_omitted=True,
            stage_entered=entered,
            kept=kept,
        )
        return projection, sent

    def _dirty(self) -> bool:
        return self._s.version != self._projected_version and not self._held

    # ------------------------------------------------------------ stage work

    async def _check_duplicates(self) -> None:
        version = self._s.version
        result = await workflow.execute_activity_method(
            DedupActivities.check_duplicates,
            DedupCheckInput(
                request_id=self._s.request_id,
                member_state=self._s.member_state,
                draft=self._s.draft,
                submitted_at=self._s.submitted_at,
                dismissed=list(self._s.dismissed_candidates),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        if self._s.stage is not Stage.dedup_check or self._s.version != version:
            return  # withdrawn or cancelled meanwhile
        self._s.dedup = result
        self._record(
            SYSTEM_ACTOR,
            "dedup_checked",
            to=Stage.asec_review,
            comment=f"{result.verdict.value}: {len(result.candidates)} candidate(s)",
            data={"verdict": result.verdict.value, "candidates": [c.id for c in result.candidates]},
        )

    async def _propose_match(self) -> None:
        version = self._s.version
        proposal = await workflow.execute_activity_method(
            MatchingActivities.propose_match,
            MatchInput(
                request_id=self._s.request_id,
                member_state=self._s.member_state,
                draft=self._s.draft,
                as_of=workflow.now(),
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        if self._s.stage is not Stage.rocb_matching or self._s.version != version:
            return
        self._s.match = MatchInfo(
            candidates=proposal.candidates,
            proposed_programme_id=proposal.programme_id,
            proposed_funding_partner=proposal.funding_partner,
            meeting=proposal.meeting,
        )
        self._record(
            SYSTEM_ACTOR,
            "match_proposed",
            comment=f"{len(proposal.candidates)} expert(s) proposed",
            data={
                "experts": [c.expert_id for c in proposal.candidates],
                "meeting": proposal.meeting.id if proposal.meeting else None,
            },
        )

    async def _invite_experts(self) -> None:
        """One child workflow per expert, in ranked order, until one accepts."""
        match = self._s.match
        assert match is not None
        asked = {i.expert_id for i in self._s.invitations if i.status is not InvitationStatus.cancelled}
        for expert_id in [e for e in match.expert_ids if e not in asked]:
            outcome = await self._invite(expert_id)
            if outcome is None:
                return  # the request left expert_invitation (withdrawn, cancelled)
            if outcome.status is InvitationStatus.accepted:
                self._record(
                    outcome.responded_by or SYSTEM_ACTOR,
                    "expert_accepted",
                    to=Stage.scheduled,
                    comment=outcome.comment,
                    data={"expert_id": expert_id},
                )
                return
        match.expert_ids = []
        self._s.match = None
        self._record(
            SYSTEM_ACTOR,
            "no_expert_left",
            to=Stage.rocb_matching,
            comment="every invited expert declined or did not answer in time",
        )

    async def _invite(self, expert_id: str) -> InvitationOutcome | None:
        match = self._s.match
        assert match is not None
        invitation_id = f"{self._s.request_id}-{len(self._s.invitations) + 1}"
        respond_by = workflow.now() + timedelta(days=self._s.invitation_response_days)
        if self._sla:
            clock = await self._clock_activity(
                DeadlineActivities.start_clock,
                ClockRequest(
                    request_id=self._s.request_id,
                    policy_key="expert_invitation",
                    stage=Stage.expert_invitation,
                    owner="ROCB-AP",
                    start=workflow.now(),
                ),
            )
            respond_by = clock.due_at
        info = InvitationInfo(
            id=invitation_id,
            expert_id=expert_id,
            meeting=match.meeting,
            status=InvitationStatus.pending,
            respond_by=respond_by,
        )
        self._s.invitation = info
        self._s.invitations.append(info)
        self._record(
            SYSTEM_ACTOR,
            "invitation_sent",
            comment=f"{expert_id} invited",
            data={
                "invitation_id": invitation_id,
                "expert_id": expert_id,
                "respond_by": respond_by.isoformat(),
            },
        )
        # The read model shows the invitation once its workflow can take the answer. No await since
        # the record above: the projection pump has not seen it yet.
        self._held = self._announce_started
        try:
            child = await workflow.start_child_workflow(
                ExpertInvitationWorkflow.run,
                InvitationInput(
                    invitation_id=invitation_id,
                    request_id=self._s.request_id,
                    member_state=self._s.member_state,
                    title=self._s.draft.title,
                    expert_id=expert_id,
                    meeting=match.meeting,
                    respond_by=respond_by,
                ),
                id=invitation_workflow_id(invitation_id),
                static_summary=f"Invitation {invitation_id}: {expert_id} for {self._s.request_id}",
            )
        finally:
            self._held = False
        left = asyncio.create_task(
            workflow.wait_condition(lambda: self._s.stage is not Stage.expert_invitation)
        )
        while True:
            cutoff = self._until_cutoff() if self._rounds else None
            timer = asyncio.create_task(asyncio.sleep(cutoff.total_seconds())) if cutoff else None
            await workflow.wait(
                [child, left, *([timer] if timer else [])], return_when=asyncio.FIRST_COMPLETED
            )
            if timer is None or child.done() or left.done():
                if timer is not None:
                    timer.cancel()
                break
            await self._roll_over_meeting(info)
        if not child.done():
            child.cancel()
            info.status = InvitationStatus.cancelled
            self._touch()
            return None
        left.cancel()
        outcome = child.result()
        info.status = outcome.status
        info.responded_at = outcome.responded_at
        info.comment = outcome.comment
        if outcome.status is not InvitationStatus.accepted:
            self._record(
                outcome.responded_by or SYSTEM_ACTOR,
                f"invitation_{outcome.status.value}",
                comment=outcome.comment,
                data={"invitation_id": invitation_id, "expert_id": expert_id},
            )
        return outcome

    async def _await_donor_round(self) -> None:
        """A request with no match waits for the next donor round, then goes back to matching."""
        if self._s.donor_round_at is None:
            self._s.donor_round_at = await workflow.execute_activity_method(
                DeadlineActivities.next_donor_round,
                workflow.now(),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._s.sla_due_at = self._s.donor_round_at
            self._touch()
            self._publish()
        opens = self._s.donor_round_at
        wait = None if opens is None else max(opens - workflow.now(), timedelta(seconds=1))
        try:
            await workflow.wait_condition(
                lambda: self._s.stage is not Stage.on_hold or self._history_is_long(), timeout=wait
            )
        except TimeoutError:
            self._s.match = None
            self._s.donor_round_at = None
            self._record(
                SYSTEM_ACTOR,
                "donor_round_opened",
                to=Stage.rocb_matching,
                comment=f"next donor round opened {opens.isoformat() if opens else ''}",
            )

    def _until_cutoff(self) -> timedelta | None:
        """Time left before the meeting's agenda cut-off (the end of that day, UTC)."""
        meeting = self._s.match.meeting if self._s.match else None
        if meeting is None:
            return None
        cutoff = datetime.combine(meeting.agenda_cutoff + timedelta(days=1), time.min, tzinfo=UTC)
        return max(cutoff - workflow.now(), timedelta(seconds=1))

    async def _roll_over_meeting(self, info: InvitationInfo) -> None:
        """The agenda cut-off passed while the expert was deciding: move to the next meeting."""
        assert self._s.match is not None
        missed = self._s.match.meeting
        following = await workflow.execute_activity_method(
            MatchingActivities.next_meeting,
            workflow.now(),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        self._s.match.meeting = following
        info.meeting = following
        self._record(
            SYSTEM_ACTOR,
            "meeting_rolled_over",
            comment=f"agenda cut-off of {missed.id if missed else '-'} passed; "
            f"now {following.id if following else 'no meeting yet'}",
            data={"missed": missed.id if missed else None, "meeting": following.id if following else None},
        )

    def _touch(self) -> None:
        self._s.version += 1
        self._s.updated_at = workflow.now()

    async def _await_meeting(self) -> None:
        """`scheduled` until the meeting has been held, then `awaiting_report`."""
        meeting = self._s.match.meeting if self._s.match else None
        if meeting is None:
            await workflow.wait_condition(lambda: self._s.stage is not Stage.scheduled)
            return
        held = datetime.combine(meeting.ends_on + timedelta(days=1), time.min, tzinfo=UTC)
        wait = held - workflow.now()
        try:
            await workflow.wait_condition(
                lambda: self._s.stage is not Stage.scheduled, timeout=max(wait, timedelta(seconds=1))
            )
        except TimeoutError:
            self._record(
                SYSTEM_ACTOR,
                "meeting_held",
                to=Stage.awaiting_report,
                comment=f"{meeting.body} {meeting.number} ended {meeting.ends_on.isoformat()}",
            )


def _open_stages() -> list[Stage]:
    return [s for s in Stage if not s.is_terminal]


def _beneficiaries(member_state: Any, extra: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys([member_state, *extra]))
