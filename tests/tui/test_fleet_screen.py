"""The Fleet screen against real Redis, the real engine and a real worker: drain and resume
a worker, pause and resume a backend; Redis and the database asserted after each."""

from __future__ import annotations

from sqlalchemy import select

from storyworld.engine import services
from storyworld.engine.models import JobRow
from storyworld.engine.planner import plan_script
from storyworld.queue import control
from storyworld.tui.fleet import FleetScreen
from storyworld.tui.screens import ConfirmScreen

from .conftest import rows_of, run, until

ONE = "# One\n\n[1s] The lamp is lit.\n"


def test_drain_and_pause_from_the_fleet_screen(runtime, background, make_console) -> None:
    w = background.worker(runtime)
    c = make_console()
    q = runtime.queue
    r = runtime.clients.fast

    async def yes(pilot, key: str) -> None:  # type: ignore[no-untyped-def]
        await pilot.press(key)
        await until(pilot, lambda: isinstance(c.app.screen, ConfirmScreen))
        await pilot.press("y")

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=(180, 50)) as pilot:
            app.open_fleet()
            screen = await until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen)
            workers = await until(pilot, lambda: screen.query_one("#fleet-workers"))
            await until(pilot, lambda: w.id in rows_of(workers), what="the worker listed")
            workers.focus()
            await yes(pilot, "d")
            await until(pilot, lambda: w.draining.is_set(), what="the worker drained")
            await until(pilot, lambda: rows_of(workers)[w.id][1].endswith("draining"))
            assert r.llen(control.control_key(q, w.id)) == 0  # the command was taken
            # Drained: a new episode's job waits.
            ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
            await until(pilot, lambda: r.llen(q.keys.jobs) == 1, what="the job waits")
            await yes(pilot, "u")
            await until(pilot, lambda: services.episode_detail(runtime, ep["id"])["state"]
                        == "completed", timeout=30)  # fmt: skip
            # Pause the animatic backend from the backends table.
            backends = screen.query_one("#fleet-backends")
            backends.focus()
            backends.move_cursor(row=backends.get_row_index("animatic"))
            await yes(pilot, "b")
            await until(pilot, lambda: "animatic" in control.paused_backends(q))
            await until(pilot, lambda: rows_of(backends)["animatic"][1] == "⏸ paused")
            held = services.create_episode(runtime, plan_script(ONE), script=ONE)
            await pilot.pause(0.5)
            with runtime.sessions() as s:
                assert s.scalars(select(JobRow).where(JobRow.episode_id == held["id"])).all() == []
            await yes(pilot, "b")
            await until(pilot, lambda: not control.paused_backends(q))
            await until(pilot, lambda: services.episode_detail(runtime, held["id"])["state"]
                        == "completed", timeout=30)  # fmt: skip

    run(scenario())
