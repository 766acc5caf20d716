"""`storyworld smoke` against a real local deployment: engine, one worker, Redis, Ceph RGW."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from storyworld.config import load_settings
from storyworld.engine.models import Episode
from storyworld.engine.runtime import Runtime, open_runtime
from storyworld.smoke import run_smoke
from tests.conftest import Background, make_env
from tests.s3_fixtures import S3TestServer


def _env(tmp_path: Path, redis_url: str, prefix: str, s3: S3TestServer) -> dict[str, str]:
    env = make_env(tmp_path, redis_url, prefix)
    env.pop("STORAGE_URL")
    env.update(s3.env(s3.make_bucket("smoke")))
    return env


def _leftovers(rt: Runtime, bucket_client: Any, bucket: str) -> tuple[int, list[str]]:
    with rt.sessions() as s:
        episodes = s.query(Episode).count()
    listing = bucket_client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return episodes, [o["Key"] for o in listing]


@pytest.mark.s3
def test_smoke_passes_on_a_real_deployment_and_cleans_up(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    s3_server: S3TestServer,
    background: Background,
) -> None:
    env = _env(tmp_path, redis_url, key_prefix, s3_server)
    settings = load_settings(env=env, env_file=None)
    with open_runtime(settings, role="test") as rt:
        background.engine(rt)
        background.worker(rt)
        out = run_smoke(settings, timeout_s=60)
        assert out.ok, out.text()
        assert out.backend == "animatic"  # the cheapest the fleet serves
        assert [s.name for s in out.steps] == [
            "create a one-beat episode",
            "its job waits in the job queue",
            "a worker takes the job",
            "the clip is in storage",
            "the result comes back on the result queue",
            "the episode completes and its file downloads",
        ]
        assert "took job" in out.steps[2].detail
        assert "through its link" in out.steps[5].detail
        doc = json.loads(out.as_json())
        assert doc["ok"] and doc["failed_step"] is None and len(doc["steps"]) == 6
        assert all(s["seconds"] >= 0 for s in doc["steps"])
        assert s3_server.secret_key not in out.text() + out.as_json()
        # Nothing left: no episode in the database, no object in the bucket.
        assert _leftovers(rt, s3_server.client(), env["S3_BUCKET"]) == (0, [])


@pytest.mark.s3
def test_smoke_without_a_worker_fails_at_the_worker_step_and_cleans_up(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    s3_server: S3TestServer,
    background: Background,
) -> None:
    env = _env(tmp_path, redis_url, key_prefix, s3_server)
    settings = load_settings(env=env, env_file=None)
    with open_runtime(settings, role="test") as rt:
        background.engine(rt)
        # Each step waits at most timeout_s: long enough for the engine to dispatch on a
        # loaded machine (2 s was not, once), short enough to keep the failure bounded.
        out = run_smoke(settings, timeout_s=6)
        assert not out.ok
        assert out.failed_step == "a worker takes the job", out.text()
        failed = out.steps[-1]
        assert failed.seconds < 20  # a bounded wait
        assert "no worker has a live heartbeat" in failed.advice
        assert f"{key_prefix}:jobs" in failed.advice
        assert "smoke FAILED at: a worker takes the job" in out.text()
        assert _leftovers(rt, s3_server.client(), env["S3_BUCKET"]) == (0, [])
        # The withdrawn job is not left waiting for a worker that comes later.
        r = redis.Redis.from_url(redis_url)
        assert r.llen(f"{key_prefix}:jobs") == 0 == r.hlen(f"{key_prefix}:data")
        assert r.llen(f"{key_prefix}:wake:animatic") == 0


def test_smoke_cli_exit_code_names_the_failed_step(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No engine at all: it fails at the dispatch step, exit 1, with the advice."""
    from storyworld.cli import main

    env = make_env(tmp_path, redis_url, key_prefix)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    code = main(["--env-file", str(tmp_path / ".env"), "smoke", "--timeout", "1", "--json"])
    assert code == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["failed_step"] == "its job waits in the job queue"
    assert "no engine holds the dispatch lease" in doc["steps"][-1]["advice"]
    assert doc["cleanup"].startswith("deleted episode")


@pytest.mark.s3
def test_smoke_through_the_http_api(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    s3_server: S3TestServer,
    background: Background,
) -> None:
    """`--api URL`: the episode is created and read through a real HTTP server (with a
    bearer token), the queue and storage are watched directly."""
    import threading

    import uvicorn

    from storyworld.api.server import build_app
    from tests.conftest import free_port

    token = "smoke-api-token-5d0c"
    env = _env(tmp_path, redis_url, key_prefix, s3_server)
    env["API_TOKEN"] = token
    settings = load_settings(env=env, env_file=None)
    port = free_port()
    with open_runtime(settings, role="test") as rt:
        background.engine(rt)
        background.worker(rt)
        server = uvicorn.Server(
            uvicorn.Config(build_app(rt), host="127.0.0.1", port=port, log_config=None)
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            while not server.started:
                assert thread.is_alive(), "the API server did not start"
                threading.Event().wait(0.02)
            out = run_smoke(settings, api=f"http://127.0.0.1:{port}", timeout_s=60)
            assert out.ok, out.text()
            assert token not in out.text() and token not in out.as_json()
            assert s3_server.secret_key not in out.text() + out.as_json()
            assert "the API cannot delete episodes" in out.cleanup
            # What it could remove is gone: no object in the bucket.
            listing = s3_server.client().list_objects_v2(Bucket=env["S3_BUCKET"])
            assert listing.get("KeyCount", 0) == 0
            # A wrong token: the first step fails and says what to check.
            bad = run_smoke(settings, api=f"http://127.0.0.1:{port}", api_token="nope", timeout_s=5)
            assert bad.failed_step == "create a one-beat episode"
            assert "401" in bad.steps[0].detail and "API_TOKEN" in bad.steps[0].advice
        finally:
            server.should_exit = True
            thread.join(10)
