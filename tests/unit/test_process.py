"""The long-running processes' event loop and heap (taflow.process)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
import uvloop

from taflow.process import freeze_startup_heap, run_event_loop


def test_the_event_loop_is_uvloop_and_hands_back_the_result() -> None:
    async def which_loop() -> type[asyncio.AbstractEventLoop]:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert run_event_loop(which_loop()) is uvloop.Loop


def test_an_error_in_the_coroutine_reaches_the_caller() -> None:
    async def fails() -> None:
        raise LookupError("no such request")

    with pytest.raises(LookupError, match="no such request"):
        run_event_loop(fails())


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_the_startup_heap_is_left_out_of_later_collections() -> None:
    made_at_startup = [[n] for n in range(1000)]  # tracked containers, like models and routes
    assert gc.get_freeze_count() == 0
    freeze_startup_heap()
    assert gc.get_freeze_count() >= len(made_at_startup)
