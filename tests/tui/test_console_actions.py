"""Every action of the console, driven with the keyboard through a pilot, against the real
Redis, the real engine and a real (thread) worker; assertions look at the database and at
Redis, not only at the screen."""

from __future__ import annotations

import time

from sqlalchemy import select
from textual.command import CommandPalette

from storyworld.engine import services
from storyworld.engine.models import Episode, JobRow
from storyworld.engine.planner import plan_script
from storyworld.tui.dashboard import Dashboard
from storyworld.tui.dead_letters import DeadLettersScreen
from storyworld.tui.episode import EpisodeScreen
from storyworld.tui.new_episode import NewEpisodeScreen
from storyworld.tui.screens import ConfirmScreen, HelpScreen
from storyworld.worker.backends.base import PermanentRenderError, RenderBackend

from .conftest import rows_of, run, text_of, until

SIZE = (160, 48)
TWO_BEATS = "# Two beats\n\n[1s] A door opens.\n\n[1s] A cat walks in.\n"


class BrokenBackend(RenderBackend):
    name = "animatic"

    def render(self, ctx):  # type: ignore[no-untyped-def]
        raise PermanentRenderError("the model is gone")


def _episode_state(rt, episode_id: str) -> str:  # type: ignore[no-untyped-def]
    return services.episode_detail(rt, episode_id)["state"]


def test_new_episode_from_the_example_renders_and_shows_everywhere(
    runtime, background, make_console
) -> None:
    background.worker(runtime)
    c = make_console()

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, Dashboard))
            await pilot.press("e")
            screen = await until(
                pilot, lambda: isinstance(app.screen, NewEpisodeScreen) and app.screen
            )
            plan = await until(pilot, lambda: rows_of(screen.query_one("#plan")))
            assert len(plan) == 3  # the lighthouse example has three beats
            await pilot.press("ctrl+s")
            detail = await until(
                pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen
            )
            episode_id = detail.episode_id
            # In the database: created with three beats, then rendered by the real engine.
            await until(
                pilot,
                lambda: _episode_state(runtime, episode_id) == "completed",
                timeout=60,
                what="episode completed in the database",
            )
            await until(
                pilot,
                lambda: "completed" in text_of(detail.query_one("#episode-header")),
                what="episode detail says completed",
            )
            beats = rows_of(detail.query_one("#beats"))
            assert [r[1] for r in beats.values()] == ["✓ done"] * 3
            # The highlighted beat's keyframe is drawn with half blocks.
            await until(
                pilot,
                lambda: "▀" in text_of(detail.query_one("#keyframe")),
                what="keyframe preview",
            )
            await pilot.press("escape")
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            episodes = await until(pilot, lambda: rows_of(dash.query_one("#episodes")))
            row = episodes[episode_id]
            assert "✓ completed" in row and "3/3" in row[3]
            # Every upload recorded in the database is in the upload feed, by key.
            db_keys = {u["key"] for u in services.recent_uploads(runtime, 50)}
            assert any(k.endswith("episode.mp4") for k in db_keys)
            await until(
                pilot,
                lambda: db_keys <= set(rows_of(dash.query_one("#uploads"))),
                what="uploads feed",
            )
            # The worker shows with its finished jobs.
            workers = rows_of(dash.query_one("#workers"))
            assert len(workers) == 1
            (cells,) = workers.values()
            assert cells[8] == "3"  # done

    run(scenario())


def test_retry_a_failed_beat_from_episode_detail(runtime, background, make_console) -> None:
    plan = plan_script(TWO_BEATS)
    ep = services.create_episode(runtime, plan, script=TWO_BEATS)
    broken = background.worker(runtime, backends={"animatic": BrokenBackend(runtime.settings)})
    c = make_console()

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: _episode_state(runtime, ep["id"]) == "failed",
                what="episode failed on the broken worker",
                timeout=30,
            )
            broken.request_stop(grace_s=1)
            background.worker(runtime)  # a working one
            app.open_episode(ep["id"])
            screen = await until(
                pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen
            )
            beats = await until(pilot, lambda: rows_of(screen.query_one("#beats")))
            assert any("✗ failed" in r for r in beats.values())
            assert any("model is gone" in r[6] for r in beats.values())
            failed = next(k for k, r in beats.items() if "✗ failed" in r)
            table = screen.query_one("#beats")
            table.move_cursor(row=table.get_row_index(failed))
            await pilot.press("r")
            await until(
                pilot,
                lambda: (
                    services.episode_detail(runtime, ep["id"])["beats"][int(failed)]["state"]
                    == "done"
                ),
                timeout=30,
                what="the retried beat rendered",
            )
            d = services.episode_detail(runtime, ep["id"])
            beat = d["beats"][int(failed)]
            assert beat["attempts"] == 2 and [j["state"] for j in beat["jobs"]][-1] == "succeeded"
            assert any("retry requested by the operator" in h["reason"] for h in d["history"])

    run(scenario())


def test_open_cancel_with_confirmation_then_retry_from_the_dashboard(runtime, make_console) -> None:
    plan = plan_script(TWO_BEATS)
    ep = services.create_episode(runtime, plan, script=TWO_BEATS)
    c = make_console()  # engine, no workers: the jobs wait on Redis
    jobs_key = runtime.queue.keys.jobs
    r = runtime.clients.fast

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: r.llen(jobs_key) == 2, what="two jobs waiting on Redis")
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            await until(pilot, lambda: ep["id"] in rows_of(dash.query_one("#episodes")))
            await pilot.press("enter")  # open the highlighted episode
            detail = await until(
                pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen
            )
            assert detail.episode_id == ep["id"]
            await until(pilot, lambda: len(rows_of(detail.query_one("#beats"))) == 2)
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, Dashboard))
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")  # changed my mind: nothing happens
            await until(pilot, lambda: isinstance(app.screen, Dashboard))
            assert _episode_state(runtime, ep["id"]) in ("planned", "rendering")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: _episode_state(runtime, ep["id"]) == "cancelled")
            assert r.llen(jobs_key) == 0  # withdrawn from Redis
            await until(
                pilot,
                lambda: "⊘ cancelled" in rows_of(dash.query_one("#episodes"))[ep["id"]],
                what="dashboard shows cancelled",
            )
            # r on the dashboard: the cancelled beats render again (new attempts queued).
            await pilot.press("r")
            await until(pilot, lambda: _episode_state(runtime, ep["id"]) == "rendering")
            await until(pilot, lambda: r.llen(jobs_key) == 2, what="new attempts on Redis")
            beats = services.episode_detail(runtime, ep["id"])["beats"]
            assert all(b["attempts"] == 2 for b in beats)

    run(scenario())


def test_quit_stops_the_engine_it_runs(runtime, make_console) -> None:
    c = make_console()
    lease = runtime.queue.keys.engine_lease
    r = runtime.clients.fast

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: c.host.orchestrator.is_leader, what="engine leads")
            assert r.exists(lease)
            await pilot.press("q")
            await until(pilot, lambda: app.return_code == 0, what="the app exited")

    run(scenario())
    assert c.host._thread is None  # joined
    assert not r.exists(lease)  # the lease was given up, another engine may take over


def _dead_letter(runtime) -> str:  # type: ignore[no-untyped-def]
    """Take a waiting job as a fake worker and dead-letter it (as a worker does with a job
    it cannot read). Returns its id."""
    q = runtime.queue
    res = q.take("fake-worker", ["animatic"], timeout_s=2)
    assert res is not None
    job_id = res.job.job_id
    q.dead_letter(res.raw, job_id, "fake-worker", f"cannot read {job_id}")
    return job_id


def test_dead_letters_requeue_and_drop_with_confirmation(runtime, make_console) -> None:
    plan = plan_script(TWO_BEATS)
    services.create_episode(runtime, plan, script=TWO_BEATS)
    c = make_console()
    q = runtime.queue
    r = runtime.clients.fast

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: r.llen(q.keys.jobs) == 2, what="jobs queued")
            job_ids = {_dead_letter(runtime), _dead_letter(runtime)}
            assert r.hlen(q.keys.dead) == 2

            def recorded_dead() -> bool:
                with runtime.sessions() as s:
                    return all(s.get(JobRow, j).state == "dead" for j in job_ids)

            await until(pilot, recorded_dead, what="the engine recorded the dead letters")
            await until(pilot, lambda: isinstance(app.screen, Dashboard))
            await pilot.press("d")
            screen = await until(
                pilot, lambda: isinstance(app.screen, DeadLettersScreen) and app.screen
            )
            rows = await until(
                pilot,
                lambda: (
                    len(rows_of(screen.query_one("#dead"))) == 2
                    and rows_of(screen.query_one("#dead"))
                ),
            )
            assert set(rows) == job_ids
            first = screen.query_one("#dead").highlighted_key
            assert "cannot read" in text_of(screen.query_one("#payload"))
            assert '"job_id"' in text_of(screen.query_one("#payload"))
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: r.hlen(q.keys.dead) == 1, what="one dead letter left")
            assert first not in {d.job_id for d in q.dead_letters()}
            with runtime.sessions() as s:
                assert s.get(JobRow, first).state in ("queued", "rendering")
            await until(pilot, lambda: first not in rows_of(screen.query_one("#dead")))
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: r.hlen(q.keys.dead) == 0, what="dropped")
            assert r.llen(q.keys.jobs) == 1  # the requeued one waits; the dropped one is gone
            await until(pilot, lambda: rows_of(screen.query_one("#dead")) == {})

    run(scenario())


def test_pause_and_resume_dispatch(runtime, make_console) -> None:
    c = make_console()
    paused_key = runtime.queue.keys.paused
    r = runtime.clients.fast

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            await until(pilot, lambda: "dispatch on" in text_of(dash.query_one("#status")))
            await pilot.press("p")
            await until(pilot, lambda: r.exists(paused_key), what="paused on Redis")
            await until(pilot, lambda: "⏸ paused" in text_of(dash.query_one("#status")))
            # A new episode is not dispatched while paused.
            ep = services.create_episode(runtime, plan_script(TWO_BEATS), script=TWO_BEATS)
            time.sleep(0.3)
            with runtime.sessions() as s:
                assert s.scalars(select(JobRow).where(JobRow.episode_id == ep["id"])).all() == []
            await pilot.press("p")
            await until(pilot, lambda: not r.exists(paused_key), what="resumed on Redis")
            await until(pilot, lambda: "dispatch on" in text_of(dash.query_one("#status")))
            await until(pilot, lambda: r.llen(runtime.queue.keys.jobs) == 2, what="dispatched")

    run(scenario())


def test_copy_link_retry_all_and_palette(runtime, background, make_console) -> None:
    background.worker(runtime)
    ep = services.create_episode(runtime, plan_script(TWO_BEATS), script=TWO_BEATS)
    c = make_console()

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: _episode_state(runtime, ep["id"]) == "completed", timeout=30)
            app.open_episode(ep["id"])
            screen = await until(
                pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen
            )
            await until(pilot, lambda: rows_of(screen.query_one("#beats")))
            await pilot.press("y")
            clip = services.episode_detail(runtime, ep["id"])["beats"][0]["clip_key"]
            await until(pilot, lambda: app.clipboard == runtime.store.url_for(clip))
            await pilot.press("Y")
            out = services.episode_detail(runtime, ep["id"])["output_key"]
            await until(pilot, lambda: app.clipboard == runtime.store.url_for(out))
            # The palette lists every action of the screen and runs them.
            titles = {cmd.title for cmd in app.get_system_commands(app.screen)}
            assert {"Retry beat", "Retry failed beats", "Cancel episode", "Copy clip link",
                    "Copy episode link", "Pause / resume dispatch", "Help"} <= titles  # fmt: skip
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"retry beat")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await until(
                pilot,
                lambda: services.episode_detail(runtime, ep["id"])["beats"][0]["attempts"] == 2,
                what="beat 1 rendered again through the palette",
                timeout=30,
            )
            await until(pilot, lambda: _episode_state(runtime, ep["id"]) == "completed", timeout=30)
            await pilot.press("question_mark")
            help_screen = await until(
                pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen
            )
            assert "Retry beat" in text_of(help_screen.query_one("#help-text"))

    run(scenario())


def test_read_only_offers_no_actions_and_changes_nothing(runtime, make_console) -> None:
    ep = services.create_episode(runtime, plan_script(TWO_BEATS), script=TWO_BEATS)
    c = make_console(read_only=True)
    r = runtime.clients.fast

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            dash = await until(pilot, lambda: isinstance(app.screen, Dashboard) and app.screen)
            await until(pilot, lambda: ep["id"] in rows_of(dash.query_one("#episodes")))
            assert "READ-ONLY" in text_of(dash.query_one("#status"))
            for key in ("n", "e", "r", "c", "p"):
                await pilot.press(key)
            await pilot.pause(0.3)
            assert isinstance(app.screen, Dashboard)
            titles = {cmd.title for cmd in app.get_system_commands(app.screen)}
            assert "New episode" not in titles and "Cancel episode" not in titles
            assert "Dead letters" in titles
            shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
            assert not shown & {"new_episode", "retry_episode", "cancel_episode", "toggle_pause"}
            # No engine ran: nothing was dispatched, nothing paused, state unchanged.
            assert r.llen(runtime.queue.keys.jobs) == 0 and not r.exists(runtime.queue.keys.paused)
            with runtime.sessions() as s:
                assert s.get(Episode, ep["id"]).state == "planned"

    run(scenario())
