"""The long-running processes' event loop and heap (taflow.process)."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from collections.abc import Iterator

import pytest

from taflow.process import freeze_startup_heap, run_event_loop

uvloop = pytest.importorskip("uvloop")  # not installed on Windows: the fallback below still runs there


async def which_loop() -> type[asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop())


def test_the_event_loop_is_uvloop_and_hands_back_the_result() -> None:
    assert run_event_loop(which_loop()) is uvloop.Loop


def test_without_uvloop_it_runs_on_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` now raises ImportError
    loop_type = run_event_loop(which_loop())
    assert loop_type is not uvloop.Loop
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_an_error_in_the_coroutine_reaches_the_caller() -> None:
    async def fails() -> None:
        raise LookupError("no such request")

    with pytest.raises(LookupError, match="no such request"):
        run_event_loop(fails())


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_startup_garbage_is_collected_and_the_rest_left_out_of_later_collections() -> None:
    made_at_startup = [[n] for n in range(1000)]  # tracked containers, like models and routes
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle only the collector frees
    garbage = weakref.ref(a)
    del a, b
    freeze_startup_heap()
    assert garbage() is None  # collected before the freeze, not kept forever
    assert gc.get_freeze_count() >= len(made_at_startup)
    tracked = {id(o) for o in gc.get_objects()}  # what collections walk: frozen objects are not in it
    assert id(made_at_startup) not in tracked
    assert not any(id(o) in tracked for o in made_at_startup)
