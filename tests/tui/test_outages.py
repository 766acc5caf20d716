"""Redis, the database or the storage going away: the console says so on screen, never
crashes, and recovers by itself; secrets never reach the screen."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from conftest import make_env  # tests/conftest.py
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from storyworld.config import load_settings
from storyworld.engine.runtime import open_runtime
from storyworld.storage import LocalStore
from storyworld.tui.dashboard import Dashboard

from .conftest import run, text_of, until
from .servers import PrivateValkey

SIZE = (160, 48)
PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]


@pytest.fixture
def valkey():  # type: ignore[no-untyped-def]
    server = PrivateValkey(password=PASSWORD).start()
    yield server
    server.cleanup()


def test_redis_outage_is_shown_and_recovered_from(tmp_path: Path, valkey, make_console) -> None:
    settings = load_settings(env=make_env(tmp_path, valkey.url, "sw-outage"), env_file=None)
    rt = open_runtime(settings, role="test")
    c = make_console(rt)

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            await until(pilot, lambda: "Redis ✓" in text_of(dash.query_one("#status")))
            await until(pilot, lambda: c.source.model.known, what="first read of Redis")
            valkey.stop()
            alert = await until(
                pilot,
                lambda: (
                    "Redis unreachable — retrying in" in text_of(dash.query_one("#alert"))
                    and dash.query_one("#alert")
                ),
                what="outage banner",
            )
            assert alert.display
            assert "Redis ✗" in text_of(dash.query_one("#status"))
            valkey.start()
            await until(
                pilot,
                lambda: (
                    not dash.query_one("#alert").display
                    and "Redis ✓" in text_of(dash.query_one("#status"))
                ),
                timeout=40,
                what="recovered",
            )
            # The engine it hosts recovered too and still dispatches.
            await until(pilot, lambda: c.host.orchestrator.is_leader, timeout=40)
            svg = app.export_screenshot()
            assert PASSWORD not in svg
            assert "****" in text_of(dash.query_one("#status"))  # the masked URL

    try:
        run(scenario())
    finally:
        c.close()
        rt.close()


def test_database_and_storage_outages_are_shown(runtime, tmp_path: Path, make_console) -> None:
    # A database that cannot be opened, and an artifact "folder" that is a file.
    broken_db = create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    broken = dataclasses.replace(
        runtime,
        sessions=sessionmaker(broken_db),
        store=LocalStore(blocker / "artifacts"),
    )
    c = make_console(broken, engine=False, read_only=True)

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            await until(
                pilot,
                lambda: (
                    "Database unreachable — retrying in" in text_of(dash.query_one("#alert"))
                    and "Storage unreachable" in text_of(dash.query_one("#alert"))
                ),
                what="database and storage banners",
            )
            status = text_of(dash.query_one("#status"))
            assert "DB ✗" in status and "Storage ✗" in status and "Redis ✓" in status
            # They come back: the console notices at its next try.
            c.source.rt = runtime
            await until(
                pilot,
                lambda: not dash.query_one("#alert").display,
                timeout=20,
                what="recovered",
            )
            assert "DB ✓" in text_of(dash.query_one("#status"))

    run(scenario())
