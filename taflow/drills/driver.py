"""A client that walks TA requests through the HTTP API, submission to completion, as a partner would.

Every call is retried the way a careful client retries: connection errors and 5xx answers are
tried again (submissions with the same `Idempotency-Key`, so a retry never makes a second
request); a 409 is answered by reading the request, and a step the request has already passed
counts as done (the decision was taken by an earlier attempt whose answer was lost). Traffic goes
to the one base URL it is given (the drills and benchmarks pass 127.0.0.1 only), every lifecycle
has a deadline, and the whole load is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import httpx

ASEC = "ASEC/asec_reviewer"
ROCB = "ROCB-AP/rocb_officer"
EXPERT_ID = "EXP-001"
MEMBER_STATES = ["BN", "KH", "ID", "LA", "MY", "MM", "PH", "SG", "TH", "VN", "TL"]
TOPICS = [
    "risk-management",
    "post-clearance-audit",
    "aeo-mra",
    "ipr-enforcement",
    "e-commerce",
    "green-customs",
    "environmental-crime",
    "digitalization",
    "asean-single-window",
    "smart-customs-ai",
    "data-analytics",
    "illicit-trade",
    "drug-trafficking",
    "precursors",
    "wildlife-trafficking",
    "hs-classification",
    "customs-valuation",
    "rules-of-origin",
    "time-release-study",
    "coordinated-border-management",
    "revised-kyoto-convention",
    "wto-tfa",
    "integrity",
    "strategic-trade-controls",
    "passenger-risk",
    "nii-scanners",
]
MODALITIES = ["expert_mission", "workshop", "training", "diagnostic_mission", "study_visit", "webinar"]
ORDER = [
    "submitted",
    "dedup_check",
    "asec_review",
    "rocb_matching",
    "expert_invitation",
    "scheduled",
    "awaiting_report",
    "completed",
]
_SYLLABLES = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"]


def pseudo_word(rng: random.Random, syllables: int = 3) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables))


def random_draft(rng: random.Random) -> dict[str, Any]:
    """A valid draft that the dedup check will not take for another one: made-up words in the title,
    one random topic and a short period somewhere in a twelve-year span."""
    start = date(2031, 1, 1) + timedelta(days=rng.randrange(12 * 365))
    words = " ".join(pseudo_word(rng).capitalize() for _ in range(3))
    return {
        "title": f"{words} {pseudo_word(rng, 2)}",
        "description": f"Load-test request {uuid.UUID(int=rng.getrandbits(128)).hex} with a made-up subject.",
        "topics": [rng.choice(TOPICS)],
        "modality": rng.choice(MODALITIES),
        "desired_start": start.isoformat(),
        "desired_end": (start + timedelta(days=3)).isoformat(),
    }


class ResponseLike(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class HttpClient(Protocol):
    """httpx.AsyncClient, or the benchmarks' lighter HTTP/1.1 client."""

    async def request(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> ResponseLike: ...


TRANSPORT_ERRORS = (httpx.TransportError, OSError, asyncio.IncompleteReadError)


class StepFailed(Exception):
    """The request ended somewhere we did not drive it, or a step ran out of time."""


@dataclass
class Trace:
    """What one lifecycle saw: ids, timings and every retry (for the drill's report)."""

    key: str
    member_state: str
    request_id: str | None = None
    submitted_at: float | None = None
    completed_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    error: str | None = None
    retries: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    replayed_submission: bool = False

    @property
    def completed(self) -> bool:
        return self.completed_at is not None

    def note(self, what: str) -> None:
        self.retries[what] = self.retries.get(what, 0) + 1


def _is_retryable(resp: ResponseLike) -> bool:
    return resp.status_code >= 500 or resp.status_code == 429


def _problem_kind(resp: ResponseLike) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    kind = body.get("type", "") if isinstance(body, dict) else ""
    return str(kind).rsplit("/", 1)[-1]


class Driver:
    """Drives lifecycles over one HTTP client whose base URL is the API under test."""

    def __init__(
        self,
        http: HttpClient,
        credentials: dict[str, str],
        *,
        poll_s: float = 0.05,
        max_pause_s: float = 0.5,
        lifecycle_timeout_s: float = 300.0,
        expert_id: str = EXPERT_ID,
        wait_s: int = 10,
    ) -> None:
        self.http = http
        self.wait_s = wait_s
        """How long one `GET` may wait for the request to change (`Prefer: wait`); 0: poll instead."""
        self._etags: dict[str, str] = {}
        self.credentials = credentials
        self.poll_s = poll_s
        self.max_pause_s = max_pause_s
        self.lifecycle_timeout_s = lifecycle_timeout_s
        self.expert_id = expert_id

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credentials[who]}"}

    async def _call(
        self,
        trace: Trace,
        step: str,
        method: str,
        url: str,
        deadline: float,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> ResponseLike:
        """One call, retried on transport errors and 5xx until `deadline`."""
        while True:
            trace.calls[step] = trace.calls.get(step, 0) + 1
            try:
                resp = await self.http.request(method, url, json=json, headers=headers)
            except TRANSPORT_ERRORS as exc:
                trace.note(f"{step}:{type(exc).__name__}")
            else:
                trace.statuses[str(resp.status_code)] = trace.statuses.get(str(resp.status_code), 0) + 1
                if not _is_retryable(resp):
                    return resp
                trace.note(f"{step}:{resp.status_code}")
            if time.monotonic() > deadline:
                raise StepFailed(f"{step}: no answer before the deadline")
            await asyncio.sleep(self.poll_s * 4)

    async def view(self, trace: Trace, rid: str, deadline: float) -> dict[str, Any] | None:
        resp = await self._call(
            trace, "get", "GET", f"/v1/requests/{rid}", deadline, headers=self.headers(ASEC)
        )
        return self._seen(rid, resp)

    def _seen(self, rid: str, resp: ResponseLike) -> dict[str, Any] | None:
        if resp.status_code != 200:
            return None
        etag = resp.headers.get("etag")
        if etag:
            self._etags[rid] = etag
        body: dict[str, Any] = resp.json()
        return body

    async def changed(self, trace: Trace, rid: str, deadline: float, pause: float) -> dict[str, Any] | None:
        """The request once it differs from the version last seen (the server holds the `GET` until it
        changes, up to `wait_s`), or None if it did not change meanwhile. Without a version seen yet,
        or with waiting off, a plain pause then a `GET`."""
        etag = self._etags.get(rid)
        if etag is None or not self.wait_s:
            await asyncio.sleep(pause)
            return await self.view(trace, rid, deadline)
        headers = self.headers(ASEC) | {"If-None-Match": etag, "Prefer": f"wait={self.wait_s}"}
        resp = await self._call(trace, "get", "GET", f"/v1/requests/{rid}", deadline, headers=headers)
        if resp.status_code == 304:
            return None
        if resp.status_code != 200:
            await asyncio.sleep(pause)  # e.g. 404 while the request is being recorded
        return self._seen(rid, resp)

    async def _stage(self, trace: Trace, rid: str, deadline: float) -> str | None:
        body = await self.view(trace, rid, deadline)
        return str(body["stage"]) if body else None

    @staticmethod
    def passed(stage: str | None, step_stage: str) -> bool:
        """Whether a request at `stage` has already left `step_stage` along the path we drive."""
        if stage is None:
            return False
        if stage not in ORDER:
            raise StepFailed(f"the request ended at {stage}")
        return ORDER.index(stage) > ORDER.index(step_stage)

    async def submit(self, trace: Trace, draft: dict[str, Any], deadline: float) -> str:
        headers = self.headers(f"{trace.member_state}/requester") | {"Idempotency-Key": trace.key}
        while True:
            resp = await self._call(
                trace, "submit", "POST", "/v1/requests", deadline, json=draft, headers=headers
            )
            if resp.status_code in (200, 201):
                trace.replayed_submission = resp.headers.get("idempotent-replayed") == "true"
                rid: str = resp.json()["id"]
                return rid
            trace.note(f"submit:{resp.status_code}")
            if resp.status_code not in (404, 409) or time.monotonic() > deadline:
                raise StepFailed(f"submit answered {resp.status_code}: {resp.text[:300]}")
            await asyncio.sleep(self.poll_s)

    async def decide(
        self,
        trace: Trace,
        rid: str,
        step: str,
        at_stage: str,
        url: str,
        body: dict[str, Any],
        who: str,
        deadline: float,
    ) -> dict[str, Any] | None:
        """POST a decision until it is taken, or the request is seen past `at_stage`. The decision's
        answer (the stage and version it left the request at), or None if an earlier attempt took it."""
        while True:
            resp = await self._call(trace, step, "POST", url, deadline, json=body, headers=self.headers(who))
            if resp.status_code == 200:
                answer: dict[str, Any] = resp.json()
                return answer
            kind = _problem_kind(resp)
            trace.note(f"{step}:{resp.status_code}:{kind}")
            if resp.status_code not in (404, 409, 422):
                raise StepFailed(f"{step} answered {resp.status_code}: {resp.text[:300]}")
            if kind == "duplicate-unresolved":
                await self._dismiss_candidates(trace, rid, deadline)
                continue
            if self.passed(await self._stage(trace, rid, deadline), at_stage):
                return None
            if time.monotonic() > deadline:
                raise StepFailed(f"{step}: still refused at the deadline ({resp.status_code} {kind})")
            if resp.status_code == 404:  # e.g. the invitation's workflow is not started yet: soon
                await asyncio.sleep(self.poll_s)
            else:  # the request is not at that stage yet: until it moves
                await self.changed(trace, rid, deadline, self.poll_s)

    async def _dismiss_candidates(self, trace: Trace, rid: str, deadline: float) -> None:
        view = await self.view(trace, rid, deadline) or {}
        ids = [c["id"] for c in view.get("duplicate_candidates") or []]
        body = {"decision": "dismiss", "dismissed": ids, "comment": "load test: not a duplicate"}
        await self._call(
            trace,
            "dismiss",
            "POST",
            f"/v1/requests/{rid}/asec-review",
            deadline,
            json=body,
            headers=self.headers("ASEC/asec_head"),
        )

    async def wait_for(
        self,
        trace: Trace,
        rid: str,
        what: str,
        pred: Callable[[dict[str, Any]], bool],
        deadline: float,
        answer: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Read the request (GET, the read model) until `pred` holds: each later `GET` waits for it to
        change (`changed`); without that, the pause between polls grows to `max_pause_s`.

        `answer`: a decision's answer (`id`, `stage`, `version`), which is as good as a first read for
        what it says: no `GET` if it satisfies `pred`, else a wait for a version after its own. What
        satisfied `pred`: the request as read, or that answer."""
        pause = self.poll_s
        if answer is not None:
            # the documented ETag of that version (`"<version>"`): the driver, like a partner system,
            # knows the HTTP contract only and imports nothing of the API's
            self._etags[rid] = f'"{answer["version"]}"'
            view: dict[str, Any] | None = answer
        else:
            view = await self.view(trace, rid, deadline)
        last = view
        while True:
            if view is not None and pred(view):
                return view
            if time.monotonic() > deadline:
                stage = last.get("stage") if last else None
                raise StepFailed(f"never saw {what} (at {stage})")
            trace.note(f"wait:{what}")
            view = await self.changed(trace, rid, deadline, pause)
            last = view or last
            pause = min(pause * 1.5, self.max_pause_s)

    async def wait_for_stage(
        self, trace: Trace, rid: str, stage: str, deadline: float, answer: dict[str, Any] | None = None
    ) -> None:
        await self.wait_for(
            trace,
            rid,
            stage,
            lambda v: v["stage"] == stage or self.passed(v["stage"], stage),
            deadline,
            answer,
        )

    async def lifecycle(self, trace: Trace, draft: dict[str, Any]) -> Trace:
        """Submission, ASEC approval, ROCB match, the expert's acceptance, completion."""
        deadline = time.monotonic() + self.lifecycle_timeout_s
        try:
            rid = await self.submit(trace, draft, deadline)
            trace.request_id = rid
            trace.submitted_at = time.monotonic()
            base = f"/v1/requests/{rid}"
            await self.wait_for_stage(trace, rid, "asec_review", deadline)
            await self.decide(
                trace,
                rid,
                "approve",
                "asec_review",
                f"{base}/asec-review",
                {"decision": "approve", "comment": "load test"},
                ASEC,
                deadline,
            )
            matched = await self.decide(
                trace,
                rid,
                "match",
                "rocb_matching",
                f"{base}/rocb-match",
                {"decision": "match", "expert_ids": [self.expert_id], "comment": "load test: fixed expert"},
                ROCB,
                deadline,
            )
            await self.wait_for(
                trace, rid, "invitation", lambda v: bool(v.get("invitation")), deadline, matched
            )
            await self.decide(
                trace,
                rid,
                "accept",
                "expert_invitation",
                f"/v1/invitations/{rid}-1/response",
                {"accept": True, "comment": "load test"},
                ROCB,
                deadline,
            )
            await self.wait_for_stage(trace, rid, "scheduled", deadline)
            today = datetime.now(UTC).date().isoformat()
            completed = await self.decide(
                trace,
                rid,
                "complete",
                "awaiting_report",
                f"{base}/completion",
                {"report": "Delivered (load test).", "delivered_on": today},
                ROCB,
                deadline,
            )
            await self.wait_for_stage(trace, rid, "completed", deadline, completed)
            trace.completed_at = time.monotonic()
        except StepFailed as exc:
            trace.error = str(exc)
        return trace


@dataclass
class Load:
    """`n` lifecycles, at most `concurrency` at a time; progress is readable while it runs."""

    driver: Driver
    n: int
    concurrency: int
    seed: int = 1
    key_prefix: str = "drill"
    make_draft: Callable[[random.Random], dict[str, Any]] = random_draft
    traces: list[Trace] = field(default_factory=list)

    @property
    def submitted(self) -> int:
        return sum(1 for t in self.traces if t.request_id is not None)

    @property
    def completed(self) -> int:
        return sum(1 for t in self.traces if t.completed)

    async def run(self) -> list[Trace]:
        rng = random.Random(self.seed)
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
        jobs = [
            (
                Trace(key=f"{self.key_prefix}-{run_id}-{i:06d}", member_state=MEMBER_STATES[i % 11]),
                self.make_draft(rng),
            )
            for i in range(self.n)
        ]
        self.traces = [trace for trace, _ in jobs]
        gate = asyncio.Semaphore(self.concurrency)

        async def one(trace: Trace, draft: dict[str, Any]) -> None:
            async with gate:
                trace.started_at = time.monotonic()
                await self.driver.lifecycle(trace, draft)

        await asyncio.gather(*(one(t, d) for t, d in jobs))
        return self.traces

    async def wait_until(self, pred: Callable[[Load], bool], within: float) -> bool:
        deadline = time.monotonic() + within
        while not pred(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
