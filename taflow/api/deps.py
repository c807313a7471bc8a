"""Typed dependencies: the process-wide Temporal client, engine and settings, made in the lifespan.

All `async def`, even where nothing is awaited: FastAPI runs a plain `def` dependency in a worker
thread, a thread handoff per dependency per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.api.changes import RequestChanges
from taflow.settings import Settings


async def get_client(request: Request) -> Client:
    client: Client = request.app.state.temporal_client
    return client


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


async def get_autocommit_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.autocommit_engine
    return engine


async def get_changes(request: Request) -> RequestChanges:
    changes: RequestChanges = request.app.state.changes
    return changes


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ClientDep = Annotated[Client, Depends(get_client)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
AutocommitDep = Annotated[AsyncEngine, Depends(get_autocommit_engine)]
"""The pool with every statement committing by itself (taflow.db.session.autocommit): for routes whose
database work is single statements, no BEGIN/COMMIT round trips. Connect only around the statements."""
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ChangesDep = Annotated[RequestChanges, Depends(get_changes)]


async def get_session(maker: SessionMakerDep) -> AsyncIterator[AsyncSession]:
    """One session per request (FastAPI caches it), for the route and its helpers."""
    async with maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
