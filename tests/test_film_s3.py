"""The film flow on the real S3 server (Ceph RGW): reference images are stored once per
episode under content-addressed keys, and the workers fetch them (and the keyframes) from
the bucket by key."""

from __future__ import annotations

import hashlib

import pytest
from test_e2e_local import wait_for
from test_film_flow import SCRIPT, write_cast

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.cast import load_cast
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime
from storyworld.storage.s3 import S3Store

pytestmark = pytest.mark.s3


def test_references_live_in_the_bucket(s3_server, s3_bucket, test_env, tmp_path, background):
    env = {k: v for k, v in test_env.items() if k != "STORAGE_URL"}
    env.update(s3_server.env(s3_bucket, S3_PREFIX="prod"))
    settings = load_settings(env=env, env_file=None)
    cast_path = write_cast(tmp_path)
    with open_runtime(settings, role="test") as rt:
        assert isinstance(rt.store, S3Store)
        background.engine(rt)
        background.worker(rt)
        cast = load_cast(cast_path)
        plan = plan_script(SCRIPT)
        ep = services.create_episode(rt, plan, script=SCRIPT, cast=cast, candidates=2)["id"]
        d = wait_for(
            lambda: (
                (x := services.episode_detail(rt, ep))["state"] in ("completed", "failed") and x
            ),
            timeout=60,
        )
        assert d["state"] == "completed", d["error"]
        refs = [a for a in d["artifacts"] if a["kind"] == "reference"]
        assert len(refs) == 2
        client = s3_server.client()
        for ref in refs:
            assert ref["key"].startswith(f"episodes/{ep}/references/")
            body = client.get_object(Bucket=s3_bucket, Key=f"prod/{ref['key']}")["Body"].read()
            assert hashlib.sha256(body).hexdigest() == ref["sha256"]
            assert ref["key"].endswith(f"{ref['sha256']}.png")
        # Beat 3 has both characters: its keyframe job was scored against both images.
        keyframe_job = d["beats"][2]["jobs"][0]
        assert sorted(keyframe_job["model_info"]["reference_keys"]) == sorted(
            r["key"] for r in refs
        )
        assert isinstance(d["beats"][2]["score"], float)
