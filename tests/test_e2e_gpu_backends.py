"""`storyworld render --backend animatediff|svd|veo` end to end, as a user runs it.

Real processes: the CLI with its engine, a local worker process, the embedded Redis and
the local store, rendering with tiny random models (named by ANIMATEDIFF_BASE_MODEL,
ANIMATEDIFF_MOTION_ADAPTER and SVD_MODEL, read offline) or with a local stand-in of the
Gemini API (VEO_API_BASE).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from veo_server import API_KEY, VeoTestServer

from storyworld.config import load_settings
from storyworld.media import probe
from storyworld.storage import open_store

pytestmark = [pytest.mark.slow, pytest.mark.gpu]

SCRIPT = "# Tiny\n\n[1s] A fox runs through the snow.\n\n[1.5s] The fox stops at the river.\n"
FPS = 8
BEAT_FRAMES = [8, 12]  # beat seconds x fps


def _env(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))}
    for name in ("DATABASE_URL", "STORAGE_URL", "USE_DIFFUSION", "DEFAULT_BACKEND"):
        env.pop(name, None)
    env.update({"STORYWORLD_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", **extra})
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _render_and_check(tmp_path: Path, backend: str, extra_env: dict[str, str]) -> list[dict]:
    script = tmp_path / "tiny.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    env = _env(tmp_path, extra_env)
    run = _cli(
        env,
        "render", str(script), "--backend", backend, "--size", "64x64",
        "--fps", str(FPS), "--steps", "2", "--seed", "11", "--workers", "1",
    )  # fmt: skip
    logs = "\n".join(p.read_text() for p in (tmp_path / "home" / "logs").glob("*.log"))
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n--- worker logs ---\n{logs[-5000:]}"

    episode_mp4 = Path(run.stdout.strip().splitlines()[-1])
    final = probe(episode_mp4)
    assert (final.frames, final.width, final.height) == (sum(BEAT_FRAMES), 64, 64)
    assert final.codec == "h264"

    episode_id = re.search(r"episode (\S+):", run.stderr).group(1)
    shown = _cli(env, "episode", "show", episode_id, "--json")
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert (detail["size"], detail["fps"], detail["steps"], detail["seed"]) == ("64x64", 8, 2, 11)

    store = open_store(load_settings(env=env, env_file=None))
    records = []
    for beat, frames in zip(detail["beats"], BEAT_FRAMES, strict=True):
        assert beat["state"] == "done", beat["error"]
        clip = probe(store.local_path(beat["clip_key"]))
        assert (clip.frames, clip.width, clip.height, round(clip.fps)) == (frames, 64, 64, FPS)
        # SVD animates a keyframe, so its beats get a keyframe job first (keyframes "auto").
        (job,) = [j for j in beat["jobs"] if j["backend"] == backend]
        assert job["state"] == "succeeded"
        others = {j["backend"] for j in beat["jobs"]} - {backend}
        assert others == ({"keyframe"} if backend == "svd" else set())
        kinds = {a["kind"]: a["key"] for a in detail["artifacts"] if a["job_id"] == job["job_id"]}
        assert {"clip", "keyframe", "settings"} <= set(kinds)
        record = json.loads(store.local_path(kinds["settings"]).read_text())
        spec = record["spec"]
        # Every job carries the episode's options, and the clip records what made it.
        assert (spec["width"], spec["height"], spec["fps"], spec["steps"]) == (64, 64, 8, 2)
        assert spec["seed"] is not None
        assert record["model"]["backend"] == backend
        records.append(record)
    return records


def test_render_with_animatediff(tmp_path, tiny_model_env):
    records = _render_and_check(tmp_path, "animatediff", tiny_model_env)
    for record in records:
        info = record["model"]
        assert info["model"] == tiny_model_env["ANIMATEDIFF_BASE_MODEL"]
        assert info["motion_adapter"] == tiny_model_env["ANIMATEDIFF_MOTION_ADAPTER"]
        assert (info["steps"], info["seed"]) == (2, record["spec"]["seed"])


def test_render_with_svd(tmp_path, tiny_model_env):
    records = _render_and_check(tmp_path, "svd", tiny_model_env)
    for record in records:
        info = record["model"]
        assert info["model"] == tiny_model_env["SVD_MODEL"]
        # Keyframes first: each clip animates the keyframe its beat's keyframe job stored.
        assert info["conditioning"]["kind"] == "stored"
        assert (info["steps"], info["seed"]) == (2, record["spec"]["seed"])


def test_render_with_veo(tmp_path):
    with VeoTestServer() as server:
        records = _render_and_check(
            tmp_path,
            "veo",
            {"GEMINI_API_KEY": API_KEY, "VEO_MODEL": "veo-ok", "VEO_API_BASE": server.base_url},
        )
        starts = [r for r in server.requests if r.method == "POST"]
    assert len(starts) == 2
    assert all(r["model"]["model"] == "veo-ok" for r in records)
    logs = "".join(p.read_text() for p in (tmp_path / "home" / "logs").glob("*.log"))
    assert API_KEY not in logs
