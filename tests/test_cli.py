"""The `storyworld` CLI as a user runs it: real processes, the local default, --json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storyworld.config import load_settings
from storyworld.media import probe
from storyworld.queue.embedded import EmbeddedRedis

EXAMPLE = Path(__file__).parent.parent / "storyworld" / "examples" / "lighthouse.txt"


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def local_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))}
    env.pop("DATABASE_URL", None)
    env.pop("STORAGE_URL", None)
    env.update(
        {
            "STORYWORLD_HOME": str(tmp_path / "home"),
            "DEFAULT_WIDTH": "96",
            "DEFAULT_HEIGHT": "64",
            "DEFAULT_FPS": "8",
        }
    )
    return env


@pytest.mark.slow
def test_render_on_the_local_default(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", "render", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.name == "episode.mp4"
    info = probe(path)
    assert info.frames == 12 * 8 and info.codec == "h264"
    # The embedded server is gone once the last program left...
    assert not EmbeddedRedis(tmp_path / "home")._ping()
    # ...and its data (the episode) is still there for the next run.
    again = subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", "render", str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0
    assert "already rendered" in again.stderr
    assert again.stdout.strip() == str(path)


@pytest.mark.slow
def test_interrupted_render_resumes_the_same_episode(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    script = tmp_path / "long.txt"
    script.write_text("[1s] Quick.\n\n[25s] Slow.\n\n[25s] Slower.\n")
    env.update({"DEFAULT_WIDTH": "480", "DEFAULT_HEIGHT": "320", "DEFAULT_FPS": "24"})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "storyworld.cli",
            "--env-file",
            "",
            "render",
            "--workers",
            "1",
            str(script),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = proc.stderr.readline()  # "episode <id>: 3 beats ..."
    episode_id = first.split()[1].rstrip(":")
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until the first beat is rendered
        if "beat 1: done" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "storyworld.cli",
            "--env-file",
            "",
            "render",
            "--workers",
            "2",
            str(script),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert f"resuming episode {episode_id}" in out.stderr
    assert episode_id in out.stdout


def test_invalid_script_is_refused_with_the_line(tmp_path: Path, test_env) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Fine.\n\n[90s] Too long.\n")
    out = cli("episode", "create", str(bad), env=test_env)
    assert out.returncode == 2
    assert f"{bad}, line 3: beat lasts 90s" in out.stderr
    assert "Traceback" not in out.stderr
    listed = cli("episode", "list", "--json", env=test_env)
    assert json.loads(listed.stdout) == []


def test_unknown_backend_and_bad_size(test_env) -> None:
    out = cli("episode", "create", str(EXAMPLE), "--size", "big", env=test_env)
    assert out.returncode == 2 and "size must look like 512x288" in out.stderr


def test_json_shapes(test_env, runtime) -> None:
    created = json.loads(cli("episode", "create", str(EXAMPLE), "--json", env=test_env).stdout)
    for key in (
        "id",
        "title",
        "state",
        "backend",
        "beats_done",
        "beats_total",
        "beats",
        "artifacts",
        "history",
        "size",
        "fps",
        "error",
        "output_key",
    ):
        assert key in created
    assert created["state"] == "planned" and created["beats_total"] == 3
    assert {"index", "state", "text", "duration_s", "attempts", "jobs"} <= set(created["beats"][0])
    listed = json.loads(cli("episode", "list", "--json", env=test_env).stdout)
    assert [e["id"] for e in listed] == [created["id"]]
    shown = json.loads(cli("episode", "show", created["id"][:6], "--json", env=test_env).stdout)
    assert shown["id"] == created["id"]
    stats = json.loads(cli("queue", "stats", "--json", env=test_env).stdout)
    assert set(stats) >= {
        "waiting",
        "in_flight",
        "dead",
        "results_pending",
        "workers",
        "engine",
        "paused",
        "oldest_waiting_s",
        "queue",
    }
    runtime.queue.inject("junk", "not json", "animatic")
    runtime.queue.take("w", ["animatic"])
    dead = json.loads(cli("queue", "dead", "--json", env=test_env).stdout)
    assert dead[0]["reason"].startswith("job is not JSON") and dead[0]["payload"] == "not json"
    dropped = cli("queue", "drop", "--all", env=test_env)
    assert dropped.returncode == 0 and "dropped 1" in dropped.stdout


def test_cancel_and_retry_commands(test_env, runtime) -> None:
    created = json.loads(cli("episode", "create", str(EXAMPLE), "--json", env=test_env).stdout)
    out = cli("episode", "cancel", created["id"], env=test_env)
    assert out.returncode == 0 and "cancelled" in out.stdout
    again = cli("episode", "cancel", created["id"], env=test_env)
    assert again.returncode == 2 and "already cancelled" in again.stderr
    retried = cli("episode", "retry", created["id"], env=test_env)
    assert retried.returncode == 0 and "rendering" in retried.stdout


def test_config_masks_secrets(test_env) -> None:
    env = {
        **test_env,
        "REDIS_URL": "redis://default:hunter2secret@127.0.0.1:6379/0",
        "S3_SECRET_KEY": "s3-very-secret-value",
        "GEMINI_API_KEY": "AIza-secret-key",
    }
    out = cli("config", env=env)
    assert out.returncode == 0
    for secret in ("hunter2secret", "s3-very-secret-value", "AIza-secret-key"):
        assert secret not in out.stdout + out.stderr
    assert "****" in out.stdout


def test_two_programs_share_the_embedded_server(tmp_path: Path) -> None:
    env = local_env(tmp_path)
    mine = EmbeddedRedis(tmp_path / "home")
    url = mine.acquire()  # this test is the first program
    try:
        out = cli("queue", "stats", "--json", env=env)  # the second one joins, then leaves
        assert out.returncode == 0, out.stderr
        assert mine._ping()  # still running for us
        assert json.loads(out.stdout)["waiting"] == 0
        settings = load_settings(env={"STORYWORLD_HOME": str(tmp_path / "home")}, env_file=None)
        assert url.startswith("unix://") and settings.local_mode
    finally:
        mine.release()
    assert not mine._ping()
