"""The engine on PostgreSQL (DATABASE_URL), end to end, in a schema of its own."""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import make_env
from test_e2e_local import wait_for

from storyworld.config import load_settings
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime

PG = os.environ.get("STORYWORLD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url():  # type: ignore[no-untyped-def]
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    engine = sqlalchemy.create_engine(PG)
    schema = f"sw_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except sqlalchemy.exc.OperationalError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"no PostgreSQL at {PG}: {e.orig}")
    yield f"{PG}?options=-csearch_path%3D{schema}"
    with engine.begin() as c:
        c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def test_render_with_postgres(tmp_path, redis_url, key_prefix, pg_url, background) -> None:
    env = make_env(tmp_path, redis_url, key_prefix, DATABASE_URL=pg_url)
    with open_runtime(load_settings(env=env, env_file=None), role="test") as rt:
        assert rt.db.dialect.name == "postgresql"
        background.engine(rt)
        background.worker(rt)
        script = "[1s] One.\n\n[1s] Two."
        ep = services.create_episode(rt, plan_script(script), script=script)["id"]
        d = wait_for(
            lambda: (
                (x := services.episode_detail(rt, ep))["state"] in ("completed", "failed") and x
            ),
            timeout=60,
        )
        assert d["state"] == "completed", d["error"]
        assert all(len(b["jobs"]) == 1 for b in d["beats"])
        background.stop_all()
