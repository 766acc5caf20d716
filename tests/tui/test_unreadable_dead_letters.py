"""Dead letters without a job id (an unreadable entry, or one whose job id was lost): shown,
requeued where their payload is a job, dropped one by one — from the services, the CLI and
the console. Names that match nothing say so."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from typing import Any

from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.tui.dead_letters import DeadLettersScreen
from storyworld.tui.screens import ConfirmScreen

from .conftest import rows_of, run, text_of, until

TWO_BEATS = "# Two\n\nThe lamp is lit.\n\nThe ship turns.\n"
SIZE = (160, 48)


def _seed(runtime: Any) -> tuple[str, dict[str, Any]]:
    """Three dead letters: a corrupt entry, one with a job payload but no job id, and one
    whose payload is not a job. Returns (the job's payload, the letters by reason)."""
    q = runtime.queue
    r = runtime.clients.fast
    services.create_episode(runtime, plan_script(TWO_BEATS), script=TWO_BEATS, wake=False)
    job_payload = json.dumps(
        {
            "v": 1,
            "type": "job",
            "job_id": "ep-b000-a1",
            "episode_id": "ep",
            "beat_index": 0,
            "backend": "animatic",
            "spec": {"prompt": "The lamp", "width": 64, "height": 64, "fps": 8, "seconds": 1.0},
        }
    )
    # Letters a foreign or older program wrote, named as the dead-letter hash names them.
    for raw in ("{garbage", json.dumps({"reason": "lost its id", "payload": job_payload, "at": 1})):
        r.hset(q.keys.dead, "entry:" + hashlib.sha1(raw.encode()).hexdigest()[:16], raw)
    q.dead_letter("not a job", "", "w1", "unparseable job message")
    letters = {d.reason: d for d in q.dead_letters()}
    return job_payload, letters


def test_services_view_requeue_and_drop_entries_without_a_job_id(runtime) -> None:
    q = runtime.queue
    r = runtime.clients.fast
    _payload, letters = _seed(runtime)
    assert set(letters) == {"corrupt dead-letter entry", "lost its id", "unparseable job message"}
    refs = {d.ref for d in letters.values()}
    assert len(refs) == 3 and all(x.startswith("entry:") for x in refs)
    listed = {d["ref"] for d in services.dead_letters(runtime)}
    assert listed == refs
    # The one whose payload is a job can be requeued; the others are refused, by name.
    lost = letters["lost its id"].ref
    out = services.requeue_dead(runtime, [lost])
    assert out == {"requeued": 1, "refused": [], "unmatched": []}
    assert r.llen(q.keys.jobs) == 1
    corrupt = letters["corrupt dead-letter entry"].ref
    out = services.requeue_dead(runtime, [corrupt])
    assert out["requeued"] == 0 and out["refused"] == [corrupt]
    # Dropped one by one: only the named entry goes.
    assert services.drop_dead(runtime, [corrupt]) == {"dropped": 1, "unmatched": []}
    assert {d.reason for d in q.dead_letters()} == {"unparseable job message"}
    # A name that matches nothing changes nothing and says so.
    assert services.drop_dead(runtime, ["entry:0000000000000000"]) == {
        "dropped": 0,
        "unmatched": ["entry:0000000000000000"],
    }
    assert r.hlen(q.keys.dead) == 1


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_names_unreadable_dead_letters_and_refuses_unknown_names(runtime, test_env) -> None:
    _payload, letters = _seed(runtime)
    shown = _cli(test_env, "queue", "dead")
    assert shown.returncode == 0
    for d in letters.values():
        assert d.ref in shown.stdout
    assert "(unreadable: no job id)" in shown.stdout
    corrupt = letters["corrupt dead-letter entry"].ref
    dropped = _cli(test_env, "queue", "drop", corrupt)
    assert dropped.returncode == 0 and "dropped 1" in dropped.stdout
    assert corrupt not in {d.ref for d in runtime.queue.dead_letters()}
    for verb in ("drop", "requeue"):
        nothing = _cli(test_env, "queue", verb, "no-such-job")
        assert nothing.returncode == 1
        assert "no dead letter matches no-such-job" in nothing.stderr
    assert runtime.clients.fast.hlen(runtime.queue.keys.dead) == 2


def test_console_shows_and_drops_an_unreadable_dead_letter(runtime, make_console) -> None:
    _payload, letters = _seed(runtime)
    corrupt = letters["corrupt dead-letter entry"].ref
    c = make_console(engine=False)
    q = runtime.queue

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            app.open_dead_letters()
            screen = await until(
                pilot, lambda: isinstance(app.screen, DeadLettersScreen) and app.screen
            )
            rows = await until(pilot, lambda: len(rows_of(screen.query_one("#dead"))) == 3
                               and rows_of(screen.query_one("#dead")))  # fmt: skip
            assert set(rows) == {d.ref for d in letters.values()}
            assert rows[corrupt][0] == f"(unreadable) {corrupt}"
            table = screen.query_one("#dead")
            table.move_cursor(row=table.get_row_index(corrupt))
            await until(pilot, lambda: "{garbage" in text_of(screen.query_one("#payload")))
            await pilot.press("x")
            confirm = await until(
                pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen
            )
            assert corrupt in confirm.question
            await pilot.press("y")
            await until(pilot, lambda: corrupt not in {d.ref for d in q.dead_letters()})
            assert len(q.dead_letters()) == 2
            await until(pilot, lambda: corrupt not in rows_of(screen.query_one("#dead")))

    run(scenario())
