"""Typed dependencies: the process-wide Temporal client, engine and settings, made in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.settings import Settings


def get_client(request: Request) -> Client:
    client: Client = request.app.state.temporal_client
    return client


def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return maker


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ClientDep = Annotated[Client, Depends(get_client)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(maker: SessionMakerDep) -> AsyncIterator[AsyncSession]:
    """One session per request, shared by authentication and the route (FastAPI caches it)."""
    async with maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
