"""History from the database: depth, throughput, failure rate, p50/p95 per backend, and
episode costs; the History screen costs no Redis command."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storyworld.engine import history, services
from storyworld.engine.models import Beat, JobRow
from storyworld.engine.planner import plan_script
from storyworld.tui.history import HistoryScreen

from .conftest import rows_of, run, until

NOW = 1_800_000_000.0


def _jobs(runtime: Any, specs: list[tuple[str, str, float, float | None, float | None]]) -> str:
    """Job rows (backend, state, queued_at, started_at, render_s) of a fresh episode."""
    ep = services.create_episode(runtime, plan_script("[1s] One."), script="x", wake=False)
    with runtime.sessions.begin() as s:
        beat = s.scalar(select(Beat.id).where(Beat.episode_id == ep["id"]))
        for i, (backend, state, queued, started, render_s) in enumerate(specs):
            finished = (
                None if started is None or state == "rendering" else started + (render_s or 1)
            )
            s.add(JobRow(id=f"{ep['id']}-b000-a{i + 1}", beat_id=beat, episode_id=ep["id"],
                         attempt=i + 1, backend=backend, state=state, payload="{}",
                         queued_at=queued, started_at=started, finished_at=finished,
                         render_s=render_s))  # fmt: skip
    return ep["id"]


def test_history_per_backend_from_job_rows(runtime) -> None:
    t0 = NOW - 3600
    specs = [("svd", "succeeded", t0 + 60 * i, t0 + 60 * i + 30, float(10 + i)) for i in range(20)]
    specs += [
        ("svd", "failed", t0 + 100, t0 + 200, None),
        ("svd", "dead", t0 + 300, t0 + 400, None),
    ]
    specs += [("animatic", "queued", NOW - 120, None, None)] * 1
    specs += [("animatic", "succeeded", NOW - 7200, NOW - 7100, 2.0)]  # outside the hour
    _jobs(runtime, specs)
    h = history.history(runtime, 3600, buckets=12, now=NOW)
    svd = h["backends"]["svd"]
    assert sum(svd.done) == 20 and sum(svd.failed) == 2
    assert svd.failure_rate == 2 / 22
    renders = [10.0 + i for i in range(20)]
    assert svd.render_p50_s == history.percentile(renders, 50) == 19.0
    assert svd.render_p95_s == 28.0  # nearest rank: the 19th of 20
    animatic = h["backends"]["animatic"]
    assert animatic.depth[-1] == 1 and sum(animatic.done) == 0  # waiting now; old job outside
    assert svd.depth[-1] == 0  # every svd job was taken
    assert h["total"].depth[-1] == 1


def test_episode_costs_and_eta(runtime) -> None:
    ep = services.create_episode(runtime, plan_script("[1s] One.\n\n[1s] Two.\n\n[1s] Three."),
                                 script="x", wake=False)  # fmt: skip
    import time

    now = time.time()
    with runtime.sessions.begin() as s:
        beats = s.scalars(
            select(Beat).where(Beat.episode_id == ep["id"]).order_by(Beat.index)
        ).all()
        beats[0].state = "done"
        s.add(JobRow(id=f"{ep['id']}-b000-a1", beat_id=beats[0].id, episode_id=ep["id"], attempt=1,
                     backend="animatic", state="succeeded", payload="{}", queued_at=now - 30,
                     started_at=now - 20, finished_at=now - 10, render_s=10.0))  # fmt: skip
    costs = history.episode_costs(runtime, ep["id"], gpu_cost_per_hour=3.6, workers=2)
    assert costs == {"gpu_seconds": 10.0, "cost": 0.01, "beats_left": 2, "eta_s": 10.0}


def test_the_history_screen_costs_no_redis_command(runtime, make_console) -> None:
    _jobs(runtime, [("svd", "succeeded", 0.0, 1.0, 4.0)])
    with runtime.sessions.begin() as s:  # recent, inside the window
        for j in s.scalars(select(JobRow)):
            import time

            j.queued_at, j.started_at, j.finished_at = (
                time.time() - 60,
                time.time() - 50,
                time.time() - 40,
            )
    c = make_console(engine=False)

    def console_commands() -> int:
        return sum(int(x.get("tot-cmds", 0)) for x in runtime.clients.fast.client_list()
                   if str(x.get("name", "")).startswith("storyworld-tui"))  # fmt: skip

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.pause(0.5)
            before = console_commands()
            app.open_history()
            screen = await until(
                pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen
            )
            table = await until(pilot, lambda: screen.query_one("#history"))
            rows = await until(pilot, lambda: rows_of(table))
            assert rows["svd"][3] == "1"  # one job done in the last hour
            await pilot.press("t")
            await until(pilot, lambda: screen.window == "day")
            await pilot.press("t")
            await pilot.pause(0.3)
            assert console_commands() == before

    run(scenario())
