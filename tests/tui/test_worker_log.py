"""The worker log pane keeps up: the lines of a job a worker just finished reach the pane
within seconds (its heartbeat ships them with an event), not at the console's next idle
refresh minutes later."""

from __future__ import annotations

from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.localfleet import LocalFleet
from storyworld.tui.dashboard import Dashboard
from storyworld.tui.widgets import LogPane

from .conftest import run, until

ONE = "# One\n\n[1s] The lamp is lit.\n"


def test_a_finished_jobs_lines_reach_the_worker_log_pane(runtime, make_console) -> None:
    fleet = LocalFleet(runtime.settings, runtime.redis_url, runtime.store, ["animatic"], 1,
                       name="logtest")  # fmt: skip
    fleet.start()
    c = make_console(idle_log_refresh_s=3600.0)

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=(160, 48)) as pilot:
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)

            def ours() -> list[dict[str, str]]:
                return [w for w in runtime.queue.workers() if w["id"].startswith("logtest")]

            workers = await until(pilot, ours)
            c.source.select_worker(workers[0]["id"])
            ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
            await until(pilot, lambda: services.episode_detail(runtime, ep["id"])["state"]
                        == "completed", timeout=60)  # fmt: skip
            pane = dash.query_one("#worker-log", LogPane)
            await until(pilot, lambda: any(f"{ep['id']}-b000-a1 done" in x
                                           for x in pane.shown_lines),
                        what="the finished job's lines in the pane", timeout=30)  # fmt: skip

    try:
        run(scenario())
    finally:
        fleet.stop(grace_s=2)
