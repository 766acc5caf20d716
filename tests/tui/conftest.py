"""Fixtures for the console's tests: a console wired to a real deployment (Redis, engine,
database, store from the `runtime` fixture) and helpers to await conditions in pilots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

import storyworld
from storyworld.engine.runtime import Runtime
from storyworld.tui.app import ConsoleApp
from storyworld.tui.control import Actions, EngineHost, RingLog
from storyworld.tui.source import LiveSource

EXAMPLE = Path(storyworld.__file__).parent / "examples" / "lighthouse.txt"
T = TypeVar("T")


class Console:
    """The console's parts as `storyworld-tui` wires them, on a test deployment."""

    def __init__(
        self, rt: Runtime, *, read_only: bool = False, engine: bool = True, **source_kw: Any
    ) -> None:
        self.rt = rt
        ring = RingLog()
        self.host = EngineHost(rt, ring=ring) if engine and not read_only else None
        self._detach = None
        if self.host is not None:
            self.host.start()
        else:
            self._detach = ring.attach()
        kw: dict[str, Any] = {"db_interval_s": 0.2, "reconcile_s": 0.5, "block_s": 10.0}
        kw.update(source_kw)
        self.source = LiveSource(rt, engine=self.host, ring=ring, read_only=read_only, **kw)
        self.actions = None if read_only else Actions(rt, on_change=self.source.refresh)
        self.app = ConsoleApp(
            self.source,
            self.actions,
            example_script=EXAMPLE.read_text(),
            default_backend=rt.settings.default_backend,
            shutdown=self.host.stop if self.host else None,
            steady=True,
        )

    def close(self) -> None:
        self.source.stop()
        if self.host is not None:
            self.host.stop(grace_s=2)
        if self._detach is not None:
            self._detach()
            self._detach = None


@pytest.fixture
def make_console(runtime: Runtime) -> Iterator[Callable[..., Console]]:
    made: list[Console] = []

    def make(rt: Runtime | None = None, **kw: Any) -> Console:
        c = Console(rt or runtime, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a pilot scenario (no pytest-asyncio needed)."""
    return asyncio.run(coro)


async def until(
    pilot: Pilot[Any], predicate: Callable[[], T], *, timeout: float = 20.0, what: str = ""
) -> T:
    """Await a condition, letting the app run; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the screen may not be mounted yet
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}: last error {last!r}")
        await pilot.pause(0.05)


def plain(value: Any) -> str:
    if isinstance(value, Text):
        return value.plain
    return str(value)


def text_of(widget: Static) -> str:
    return plain(widget.content)


def rows_of(table: DataTable[Any]) -> dict[str, list[str]]:
    """Row key -> plain cell texts, in display order."""
    out = {}
    for row in table.ordered_rows:
        out[str(row.key.value)] = [plain(c) for c in table.get_row(row.key)]
    return out
