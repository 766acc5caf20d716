"""The Jobs screen against real Redis, the real engine and the database: filter, search,
detail, bulk requeue / drop / retry behind a confirmation that says how many, and an empty
filter that never selects everything."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from storyworld.engine import jobs, services
from storyworld.engine.models import Beat, JobRow
from storyworld.engine.planner import plan_script
from storyworld.tui.jobs import JobsScreen
from storyworld.tui.screens import ConfirmScreen

from .conftest import rows_of, run, text_of, until

SIZE = (160, 48)
THREE = "# Three\n\n[1s] The lamp is lit.\n\n[1s] The ship turns.\n\n[1s] Fog rolls in.\n"


def _kill(runtime: Any, n: int) -> list[str]:
    """Take `n` waiting jobs as a fake worker and dead-letter them."""
    out = []
    for _ in range(n):
        res = runtime.queue.take("fake-worker", ["animatic"], timeout_s=2)
        assert res is not None
        runtime.queue.dead_letter(res.raw, res.job.job_id, "fake-worker", "cannot render")
        # The fake worker lets go of its lease (else it expires and the job is handed out
        # again: the reclaim at work, not what this test is about).
        runtime.clients.fast.zrem(runtime.queue.keys.inflight, f"{res.job.job_id}|fake-worker")
        out.append(res.job.job_id)
    return out


def _states(runtime: Any, ids: list[str]) -> dict[str, str]:
    with runtime.sessions() as s:
        return {j.id: j.state for j in s.scalars(select(JobRow).where(JobRow.id.in_(ids)))}


async def _bulk(pilot: Any, app: Any, key: str, expect_question: str) -> None:
    await pilot.press(key)
    confirm = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen)
    assert expect_question in confirm.question, confirm.question
    await pilot.press("y")


def test_jobs_screen_filters_and_acts_in_bulk(runtime, make_console) -> None:
    ep = services.create_episode(runtime, plan_script(THREE), script=THREE)
    other = services.create_episode(runtime, plan_script(THREE), script=THREE)
    c = make_console()
    r = runtime.clients.fast
    q = runtime.queue

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: r.llen(q.keys.jobs) == 6, what="six jobs waiting")
            app.open_jobs()
            screen = await until(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen)
            table = await until(pilot, lambda: screen.query_one("#jobs"))
            await until(pilot, lambda: len(rows_of(table)) == 6)
            # An empty filter selects nothing for a bulk action.
            await pilot.press("x")
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmScreen)
            # Search by episode and prompt text.
            flt = screen.query_one("#jobs-filter")
            flt.value = f"episode:{ep['id']} ship"
            await pilot.press("slash", "enter")
            rows = await until(pilot, lambda: len(rows_of(table)) == 1 and rows_of(table))
            (job_id,) = rows
            assert job_id.startswith(ep["id"]) and rows[job_id][1] == "waiting"
            await until(
                pilot, lambda: "The ship turns." in text_of(screen.query_one("#job-detail"))
            )
            # Dead-letter two of the first episode's jobs; requeue them in bulk.
            dead = _kill(runtime, 2)
            await until(pilot, lambda: set(_states(runtime, dead).values()) == {"dead"})
            flt.value = "state:dead"
            await pilot.press("slash", "enter")
            await until(pilot, lambda: set(rows_of(table)) == set(dead), what="dead listed")
            waiting = r.llen(q.keys.jobs)
            await _bulk(pilot, app, "u", "Requeue 2 job(s) selected by state:dead")
            await until(pilot, lambda: r.hlen(q.keys.dead) == 0, what="dead list emptied")
            assert r.llen(q.keys.jobs) == waiting + 2
            await until(pilot, lambda: set(_states(runtime, dead).values()) == {"queued"})
            # Dead again, dropped in bulk (the database says failed), then retried in bulk.
            dead = _kill(runtime, 1)
            await until(pilot, lambda: set(_states(runtime, dead).values()) == {"dead"})
            await pilot.press("slash", "enter")  # read the page again
            await until(pilot, lambda: set(rows_of(table)) == set(dead))
            await _bulk(pilot, app, "x", "Drop 1 job(s) selected by state:dead")
            await until(pilot, lambda: set(_states(runtime, dead).values()) == {"failed"})
            assert r.hlen(q.keys.dead) == 0
            flt.value = "state:failed"
            await pilot.press("slash", "enter")
            await until(pilot, lambda: set(rows_of(table)) == set(dead))
            await _bulk(pilot, app, "r", "Retry 1 job(s) selected by state:failed")

            def next_attempt() -> str | None:
                with runtime.sessions() as s:
                    beat = s.scalar(select(JobRow.beat_id).where(JobRow.id == dead[0]))
                    ids = s.scalars(select(JobRow.id).where(JobRow.beat_id == beat)).all()
                    return next((i for i in ids if i != dead[0]), None)

            again = await until(pilot, next_attempt, what="a new attempt at the dropped job's beat")
            waiting_ids = {x.decode() for x in r.zrange(q.keys.waiting, 0, -1)}
            assert again in waiting_ids and dead[0] not in waiting_ids

    run(scenario())
    assert other["id"]


def test_pages_are_read_on_the_server_side(runtime) -> None:
    """100,000 jobs: a page is a LIMIT/OFFSET query over an index; the count is one query."""
    ep = services.create_episode(runtime, plan_script("[1s] One."), script="x", wake=False)
    with runtime.sessions.begin() as s:
        beat_id = s.scalar(select(Beat.id).where(Beat.episode_id == ep["id"]))
        rows = [
            {"id": f"{ep['id']}-b000-a{i}", "beat_id": beat_id, "episode_id": ep["id"],
             "attempt": i, "backend": "svd" if i % 10 == 0 else "animatic",
             "state": "failed" if i % 3 == 0 else "succeeded", "payload": f'{{"n": {i}}}',
             "queued_at": float(i)}
            for i in range(1, 100_001)
        ]  # fmt: skip
        s.execute(JobRow.__table__.insert(), rows)
    q = jobs.parse_query("state:failed backend:svd")
    page = jobs.browse(runtime, q, offset=50, limit=50)
    assert page["total"] == 3333
    newest_first = [i for i in range(100_000, 0, -1) if i % 30 == 0]
    assert [j["attempt"] for j in page["jobs"]] == newest_first[50:100]
    assert jobs.count(runtime, jobs.JobQuery()) == 100_000
    assert jobs.count(runtime, q, "retry") == 3333
