"""One way to reach Temporal: the same data converter on clients, workers and the Replayer."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from taflow.settings import Settings

DATA_CONVERTER = pydantic_data_converter


def workflow_id(request_id: str) -> str:
    """Business key of a request's workflow."""
    return f"ta-request-{request_id}"


def invitation_workflow_id(invitation_id: str) -> str:
    return f"ta-invitation-{invitation_id}"


async def connect(settings: Settings) -> Client:
    address = settings.temporal_address or f"localhost:{settings.temporal_port}"
    return await Client.connect(address, namespace=settings.temporal_namespace, data_converter=DATA_CONVERTER)
