"""The dashboard says when jobs wait for a backend no live worker serves (issue: a job for
`veo` with no veo worker running used to wait forever, silently)."""

from __future__ import annotations

from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.tui.dashboard import Dashboard

from .conftest import run, text_of, until

ONE = "# One\n\n[1s] The lamp is lit.\n"


def test_the_dashboard_names_a_backend_no_live_worker_serves(
    runtime, background, make_console
) -> None:
    background.worker(runtime)  # serves animatic only
    c = make_console()
    r = runtime.clients.fast
    q = runtime.queue

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, Dashboard))
            alert = app.screen.query_one("#alert")
            services.create_episode(runtime, plan_script(ONE), script=ONE, backend="veo")
            await until(pilot, lambda: r.llen(q.keys.jobs) == 1, what="the veo job waits")
            await until(
                pilot,
                lambda: "1 job waits for veo; no live worker serves veo" in text_of(alert),
                what="the unserved backend named on the dashboard",
            )
            assert alert.display
            # An animatic job is served: it renders and is not named.
            ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
            await until(
                pilot,
                lambda: services.episode_detail(runtime, ep["id"])["state"] == "completed",
                timeout=30,
            )
            assert "animatic" not in text_of(alert)
            await pilot.press("q")

    run(scenario())
