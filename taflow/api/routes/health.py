"""/healthz: is this process able to reach its database and Temporal? (no auth, answers fast)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from taflow.api.deps import ClientDep, SessionMakerDep
from taflow.api.schemas import HealthView

router = APIRouter(tags=["health"])
log = logging.getLogger("taflow.api")

CHECK_SECONDS = 2.0


@router.get(
    "/healthz",
    summary="Liveness and readiness",
    response_model=HealthView,
    responses={503: {"model": HealthView, "description": "The database or Temporal is unreachable"}},
)
async def healthz(sessionmaker: SessionMakerDep, client: ClientDep) -> JSONResponse:
    async def database() -> str:
        async with sessionmaker() as session:
            await session.execute(text("SELECT 1"))
        return "ok"

    async def temporal() -> str:
        healthy = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_SECONDS))
        return "ok" if healthy else "unhealthy"

    async def probe(name: str, check: Awaitable[str]) -> str:
        try:
            return await asyncio.wait_for(check, CHECK_SECONDS)
        except Exception as exc:
            log.warning("health check %s failed: %s", name, exc)
            return "unreachable"

    db, tp = await asyncio.gather(probe("database", database()), probe("temporal", temporal()))
    ok = db == "ok" and tp == "ok"
    view = HealthView(status="ok" if ok else "degraded", database=db, temporal=tp)
    return JSONResponse(view.model_dump(), status_code=200 if ok else 503)
