"""Faults that need no operator, on the engine's side: creating is all or nothing when Redis
is down or refuses the password, unknown backends and huge seeds refused, jobs no live
worker serves shown and dead-lettered after UNSERVED_TIMEOUT, requeue updates only what
Redis moved, a transient storage error while composing is retried, Redis problems said."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from conftest import free_port, make_env, start_redis_server
from sqlalchemy import func, select
from test_e2e_local import wait_for

from storyworld.config import load_settings, mask_url
from storyworld.engine import services
from storyworld.engine.errors import InvalidRequest, Unavailable
from storyworld.engine.models import Episode, JobRow, JobState
from storyworld.engine.orchestrator import Orchestrator
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime
from storyworld.queue import ProblemLog
from storyworld.storage import StorageError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "[1s] One.\n\n[1s] Two."


def _episodes(db_url: str) -> int:
    from sqlalchemy import create_engine

    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(Episode.__table__)).scalar())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_redis_server(tmp_path_factory.mktemp("pw"), port)
    redis.Redis(port=port).config_set("requirepass", "right-pw")  # after the start-up ping
    yield port
    proc.terminate()
    proc.wait(10)


def _bad_urls(password_redis: int) -> dict[str, str]:
    return {
        "down": f"redis://127.0.0.1:{free_port()}/0",
        "wrong password": f"redis://:wrong-pw@127.0.0.1:{password_redis}/0",
    }


@pytest.mark.parametrize("fault", ["down", "wrong password"])
def test_episode_create_saves_nothing_when_redis_fails(
    tmp_path, key_prefix, password_redis, fault
) -> None:
    url = _bad_urls(password_redis)[fault]
    env = make_env(tmp_path, url, key_prefix)
    script = tmp_path / "s.txt"
    script.write_text(SCRIPT)
    envfile = tmp_path / ".env"
    envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyworld.cli",
            "--env-file",
            str(envfile),
            "episode",
            "create",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert out.returncode == 3, out.stderr
    assert "nothing was saved" in out.stderr
    assert ("refused the password" in out.stderr) == (fault == "wrong password")
    assert "wrong-pw" not in out.stderr
    assert _episodes(env["DATABASE_URL"]) == 0


@pytest.mark.parametrize("fault", ["down", "wrong password"])
def test_post_episodes_saves_nothing_when_redis_fails(
    tmp_path, key_prefix, password_redis, fault
) -> None:
    from fastapi.testclient import TestClient

    from storyworld.api.app import create_app

    env = make_env(tmp_path, _bad_urls(password_redis)[fault], key_prefix)
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        client = TestClient(create_app(rt))
        r = client.post("/v1/episodes", json={"script": SCRIPT})
        assert r.status_code == 503, r.text
        assert "nothing was saved" in r.json()["error"]
        assert services.list_episodes(rt) == []


def test_create_refuses_unknown_backends_and_huge_seeds(runtime) -> None:
    with pytest.raises(InvalidRequest, match="unknown backend 'nope'"):
        services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT, backend="nope")
    with pytest.raises(InvalidRequest, match="seed must be between 0 and 2\\^63-1"):
        services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT, seed=2**63)
    assert services.list_episodes(runtime) == []
    big = services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT, seed=2**63 - 1)
    assert services.episode_detail(runtime, big["id"])["seed"] == 2**63 - 1


def test_cli_refuses_a_huge_seed(tmp_path, test_env, capsys) -> None:
    from storyworld.cli import main

    envfile = tmp_path / ".env"
    envfile.write_text("".join(f"{k}={v}\n" for k, v in test_env.items()))
    script = tmp_path / "s.txt"
    script.write_text(SCRIPT)
    rc = main(["--env-file", str(envfile), "episode", "create", str(script), "--seed", "9" * 30])
    assert rc == 2 and "seed must be between" in capsys.readouterr().err


def test_jobs_no_live_worker_serves_are_shown_then_dead_lettered(tmp_path, redis_url, key_prefix):
    env = make_env(tmp_path, redis_url, key_prefix, UNSERVED_TIMEOUT="0.2")
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        ep = services.create_episode(rt, plan_script(SCRIPT), script=SCRIPT, backend="svd")["id"]
        orch = Orchestrator(rt.settings, rt.sessions, rt.queue, rt.store)
        orch.dispatcher._last_unserved_check = float("inf")  # not yet: look at the stats
        orch.step()
        st = services.queue_stats(rt)
        assert st["unserved"] == [
            {
                "backend": "svd",
                "waiting": 2,
                "message": "2 jobs wait for svd; no live worker serves svd",
            }
        ]
        with rt.sessions.begin() as s:  # they have waited longer than the timeout
            for job in s.scalars(select(JobRow)):
                job.queued_at -= 10
        orch.dispatcher._last_unserved_check = 0.0
        orch._next_tick = 0.0
        wait_for(lambda: orch.step() is not None and _dead(rt, ep) == 2)
        d = services.episode_detail(rt, ep)
        assert d["state"] == "failed" and "no live worker served svd" in d["error"]
        assert services.queue_stats(rt)["unserved"] == []
        orch.shutdown()


def _dead(rt, episode_id: str) -> int:  # type: ignore[no-untyped-def]
    d = services.episode_detail(rt, episode_id)
    return sum(1 for b in d["beats"] for j in b["jobs"] if j["state"] == "dead")


def test_requeue_updates_only_the_rows_redis_moved(runtime) -> None:
    ep = services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT)["id"]
    orch = Orchestrator(runtime.settings, runtime.sessions, runtime.queue, runtime.store)
    orch.step()
    q = runtime.queue
    ids = sorted(
        j["job_id"] for b in services.episode_detail(runtime, ep)["beats"] for j in b["jobs"]
    )
    for raw in q.r.hmget(q.keys.data, q.r.zrange(q.keys.waiting, 0, -1)):
        from storyworld.protocol import parse_job

        job = parse_job(raw)
        q.dead_letter(raw.decode(), job.job_id, "w1", "poison")
    orch._next_tick = 0.0
    wait_for(lambda: orch.step() is not None and _dead(runtime, ep) == 2)
    assert services.drop_dead(runtime, [ids[0]])["dropped"] == 1
    out = services.requeue_dead(runtime)  # all that are left: only ids[1]
    assert out["requeued"] == 1
    with runtime.sessions() as s:
        states = dict(s.execute(select(JobRow.id, JobRow.state)).all())
    assert states == {ids[0]: JobState.DEAD, ids[1]: JobState.QUEUED}
    orch.shutdown()


class FlakyStore:
    """The artifact store, failing its first `n` downloads as an unreachable S3 would."""

    def __init__(self, store, n: int) -> None:  # type: ignore[no-untyped-def]
        self.store, self.n = store, n

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)

    def get_file(self, key, dest):  # type: ignore[no-untyped-def]
        if self.n > 0:
            self.n -= 1
            raise StorageError("storage unreachable (connect timeout)", transient=True)
        return self.store.get_file(key, dest)


def test_a_transient_storage_error_while_composing_is_retried(runtime, background) -> None:
    ep = services.create_episode(runtime, plan_script(SCRIPT), script=SCRIPT)["id"]
    orch = background.engine(runtime)
    orch.composer.store = FlakyStore(runtime.store, 2)
    background.worker(runtime)
    d = wait_for(
        lambda: (
            (x := services.episode_detail(runtime, ep))["state"] in ("completed", "failed") and x
        ),
        timeout=60,
    )
    assert d["state"] == "completed", d["error"]
    assert not any(h["to"] == "failed" for h in d["history"])


def test_redis_problems_are_said_each_time_they_change(caplog) -> None:
    log = logging.getLogger("test.problems")
    problems = ProblemLog(log, "redis://127.0.0.1:1/0", every_s=3600)
    with caplog.at_level(logging.WARNING, logger="test.problems"):
        problems.report(redis.AuthenticationError("invalid password"), 1)
        problems.report(redis.AuthenticationError("invalid password"), 2)  # throttled
        problems.report(redis.ConnectionError("Error 111 connecting"), 4)
        problems.report(redis.ConnectionError("[SSL: CERTIFICATE_VERIFY_FAILED] bad CA"), 8)
        problems.recovered()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Redis at redis://127.0.0.1:1/0 refused the password (check REDIS_URL); retrying in 1 s",
        "Redis unreachable at redis://127.0.0.1:1/0; retrying in 4 s",
        "TLS to Redis at redis://127.0.0.1:1/0 failed: [SSL: CERTIFICATE_VERIFY_FAILED] bad CA;"
        " retrying in 8 s",
        "Redis at redis://127.0.0.1:1/0 answers again",
    ]


def test_the_engine_says_the_password_is_wrong(tmp_path, key_prefix, password_redis, caplog):
    env = make_env(tmp_path, f"redis://:wrong-pw@127.0.0.1:{password_redis}/0", key_prefix)
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        from storyworld.engine.host import EngineHost

        with caplog.at_level(logging.WARNING, logger="storyworld.engine"):
            host = EngineHost(rt).start()
            wait_for(lambda: "refused the password" in host.status)
            host.stop()
        assert "refused the password" in caplog.text and "wrong-pw" not in caplog.text


def test_masking_a_url_whose_port_is_not_a_number() -> None:
    assert mask_url("redis://:s3cret@host:abc/0") == "redis://:****@host:abc/0"


def test_an_unknown_engine_error_maps_once() -> None:
    from storyworld.engine.errors import Conflict, NotFound, exit_code, http_status

    assert [http_status(e("x")) for e in (InvalidRequest, Conflict, NotFound, Unavailable)] == [
        422,
        409,
        404,
        503,
    ]
    assert [exit_code(e("x")) for e in (InvalidRequest, Conflict, NotFound, Unavailable)] == [
        2,
        2,
        2,
        3,
    ]


def test_a_beat_over_the_protocol_limits_is_refused_at_create(runtime) -> None:
    from storyworld.engine.planner import PlannedBeat, ScriptPlan

    plan = ScriptPlan(
        title="Too much talk",
        format="plain",
        beats=[
            PlannedBeat(index=0, text="Fine.", duration_s=1),
            PlannedBeat(index=1, text="Chatty.", duration_s=1, captions=["Hi."] * 500),
        ],
    )
    with pytest.raises(InvalidRequest, match="beat 2 cannot be sent"):
        services.create_episode(runtime, plan, script="x")
    assert services.list_episodes(runtime) == []
