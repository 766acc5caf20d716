"""The worker's own heartbeat on local disk, and `storyworld-worker --healthcheck`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storyworld.config import load_settings
from storyworld.engine.runtime import open_runtime
from storyworld.worker.cli import main as worker_main
from storyworld.worker.health import check_health, write_health
from tests.conftest import Background, make_env


def _wait_for(path: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not list(path.glob("*.json")):
        assert time.monotonic() < deadline, f"no health file in {path}"
        time.sleep(0.02)


def test_healthcheck_follows_the_workers_heartbeat(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    background: Background,
    capsys: pytest.CaptureFixture[str],
) -> None:
    health = tmp_path / "health"
    env = make_env(tmp_path, redis_url, key_prefix, WORKER_HEALTH_DIR=str(health))
    env_file = tmp_path / "w.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    settings = load_settings(env=env, env_file=None)
    assert worker_main(["--env-file", str(env_file), "--healthcheck"]) == 1  # nothing yet
    assert "no running worker" in capsys.readouterr().out
    with open_runtime(settings, role="test") as rt:
        w = background.worker(rt)
        _wait_for(health)
        assert worker_main(["--env-file", str(env_file), "--healthcheck"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"healthy: {w.id} idle")
        doc = json.loads(next(health.glob("*.json")).read_text())
        assert doc["id"] == w.id and doc["state"] == "idle"
        # A heartbeat older than HEARTBEAT_TTL_SECONDS: Redis has forgotten the worker.
        ok, line = check_health(
            health, settings.heartbeat_ttl_s, now=doc["at"] + settings.heartbeat_ttl_s + 1
        )
        assert not ok and "too long ago" in line
        background.stop_all()
    # A clean stop takes the file away.
    assert list(health.glob("*.json")) == []
    assert worker_main(["--env-file", str(env_file), "--healthcheck"]) == 1


def test_a_dead_workers_file_is_not_healthy(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    write_health(tmp_path, "gone", {"state": "idle"})
    f = tmp_path / "gone.json"
    doc = json.loads(f.read_text())
    doc["pid"] = int(proc.stdout)  # a process that has exited
    f.write_text(json.dumps(doc))
    ok, line = check_health(tmp_path, 330)
    assert not ok and "no running worker" in line


def test_without_a_health_dir_the_check_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env_file = tmp_path / "w.env"
    env_file.write_text("REDIS_URL=redis://127.0.0.1:1/0\n")
    assert worker_main(["--env-file", str(env_file), "--healthcheck"]) == 1
    assert "WORKER_HEALTH_DIR is not set" in capsys.readouterr().out
