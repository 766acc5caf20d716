"""The film flow on PostgreSQL: approvals by the operator and keyframes applied by the
engine change the same episode's film state under a row lock, and none is lost."""

from __future__ import annotations

import threading

from conftest import make_env
from test_e2e_local import wait_for
from test_film_flow import SCRIPT, write_cast
from test_postgres import pg_url  # noqa: F401  (the fixture)

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.cast import load_cast
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime


def test_approvals_race_keyframes_on_postgres(
    tmp_path,
    redis_url,
    key_prefix,
    pg_url,  # noqa: F811
    background,
) -> None:
    env = make_env(tmp_path, redis_url, key_prefix, DATABASE_URL=pg_url)
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        assert rt.db.dialect.name == "postgresql"
        cast = load_cast(write_cast(tmp_path))
        ep = services.create_episode(
            rt, plan_script(SCRIPT), script=SCRIPT, cast=cast, approve=True, fps=8
        )["id"]
        background.engine(rt)
        background.worker(rt)
        background.worker(rt)
        # Approve every beat, one at a time, from threads, while the keyframes arrive.
        threads = [
            threading.Thread(target=services.approve_episode, args=(rt, ep, n)) for n in (1, 2, 3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        d = wait_for(
            lambda: (
                (x := services.episode_detail(rt, ep))["state"] in ("completed", "failed") and x
            ),
            timeout=60,
        )
        assert d["state"] == "completed", d["error"]
        assert all(b["approved"] and b["keyframe"] for b in d["beats"])
        background.stop_all()
