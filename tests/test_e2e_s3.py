"""The end-to-end render against Redis and the real S3 server (Ceph RGW) instead of the
local defaults: every clip, keyframe and the final episode land in the bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_e2e_local import wait_for

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime
from storyworld.media import probe
from storyworld.storage.s3 import S3Store

pytestmark = pytest.mark.s3

SCRIPT = "# On S3\n\n[1s] A door opens.\n\n[2s] A cat walks in.\n\n[1.5s] The door closes.\n"


def test_render_stores_everything_in_the_bucket(
    s3_server, s3_bucket, test_env, tmp_path: Path, background
) -> None:
    env = {k: v for k, v in test_env.items() if k != "STORAGE_URL"}
    env.update(s3_server.env(s3_bucket, S3_PREFIX="prod"))
    settings = load_settings(env=env, env_file=None)
    with open_runtime(settings, role="test") as rt:
        assert isinstance(rt.store, S3Store)
        background.engine(rt)
        background.worker(rt)
        background.worker(rt)
        ep = services.create_episode(rt, plan_script(SCRIPT), script=SCRIPT)["id"]
        d = wait_for(
            lambda: (
                (x := services.episode_detail(rt, ep))["state"] in ("completed", "failed") and x
            ),
            timeout=90,
        )
        assert d["state"] == "completed", d["error"]
        background.stop_all()
        client = s3_server.client()
        listed = client.list_objects_v2(Bucket=s3_bucket, Prefix=f"prod/episodes/{ep}/")
        keys = sorted(o["Key"] for o in listed.get("Contents", []))
        assert f"prod/episodes/{ep}/episode.mp4" in keys
        for beat in range(3):
            for name in ("clip.mp4", "keyframe.png", "settings.json"):
                assert f"prod/episodes/{ep}/beats/{beat:03d}/attempt-1/{name}" in keys
        head = client.head_object(Bucket=s3_bucket, Key=f"prod/episodes/{ep}/episode.mp4")
        assert head["ContentType"] == "video/mp4"
        final = next(a for a in d["artifacts"] if a["kind"] == "episode")
        assert head["Metadata"]["sha256"] == final["sha256"]
        out = tmp_path / "episode.mp4"
        rt.store.get_file(final["key"], out)  # verifies the checksum
        info = probe(out)
        assert abs(info.duration_s - 4.5) <= 1 / d["fps"]
        # Uploads were recorded for the console's feed, with sizes and speeds.
        uploads = services.recent_uploads(rt, 50)
        assert len(uploads) == 10 and all(u["size"] > 0 for u in uploads)


def test_cli_render_with_redis_and_s3(s3_server, s3_bucket, test_env, tmp_path: Path) -> None:
    env = {
        **os.environ,
        **{k: v for k, v in test_env.items() if k != "STORAGE_URL"},
        **s3_server.env(s3_bucket),
    }
    script = tmp_path / "s.txt"
    script.write_text("[1s] One.\n\n[1s] Two.\n")
    out = subprocess.run(
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
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    url = out.stdout.strip().splitlines()[-1]
    assert url.startswith(s3_server.endpoint) and "X-Amz-Signature" in url
    assert s3_server.secret_key not in out.stdout + out.stderr
    import httpx

    body = httpx.get(url, timeout=30).content
    assert body[4:8] == b"ftyp"
