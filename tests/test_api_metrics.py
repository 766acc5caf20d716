"""GET /metrics: Prometheus text over a real deployment, parsed with prometheus_client's own
parser; its waiting gauge is LLEN of the job queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from storyworld.api.app import create_app
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import Runtime

TWO = "# Two\n\n[1s] The lamp is lit.\n\n[1s] The ship turns.\n"


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime, api_token="metrics-token")) as c:
        c.headers["Authorization"] = "Bearer metrics-token"
        yield c


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_metrics_follow_the_deployment(client: TestClient, runtime: Runtime, background) -> None:
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    r = runtime.clients.fast
    keys = runtime.queue.keys
    background.engine(runtime)
    ep = services.create_episode(runtime, plan_script(TWO), script=TWO)
    until(lambda: r.llen(keys.jobs) == 2)
    runtime.queue.dead_letter("not a job", "", "w1", "unparseable job message")
    # The engine's own nudges (a new episode, leadership's "busy") count as pending until
    # it reads them: wait for it to have read everything.
    m = until(lambda: (got := scrape(client))[("storyworld_results_pending", ())] == 0 and got)
    assert m[("storyworld_jobs_waiting", ())] == r.llen(keys.jobs) == 2
    assert m[("storyworld_backend_jobs_waiting", (("backend", "animatic"),))] == 2
    assert m[("storyworld_dead_letters", ())] == 1
    assert m[("storyworld_jobs_in_flight", ())] == 0
    assert m[("storyworld_results_pending", ())] == 0
    assert m[("storyworld_episodes", (("state", "rendering"),))] == 1
    leader = [k for k in m if k[0] == "storyworld_engine_leader"]
    assert len(leader) == 1 and m[leader[0]] == 1 and dict(leader[0][1])["engine"]
    sent = m[("storyworld_redis_commands_total", ())]
    assert sent > 0
    assert scrape(client)[("storyworld_redis_commands_total", ())] > sent  # a scrape sends some

    background.worker(runtime)
    until(lambda: services.episode_detail(runtime, ep["id"])["state"] == "completed")
    m = scrape(client)
    assert m[("storyworld_jobs_waiting", ())] == r.llen(keys.jobs) == 0
    assert m[("storyworld_workers_live", (("backend", "animatic"),))] == 1
    assert (
        m[("storyworld_job_outcomes_total", (("backend", "animatic"), ("outcome", "succeeded")))]
        == 2
    )
    assert m[("storyworld_render_seconds_count", (("backend", "animatic"),))] == 2
    assert m[("storyworld_render_seconds_bucket", (("backend", "animatic"), ("le", "+Inf")))] == 2
    assert m[("storyworld_render_seconds_sum", (("backend", "animatic"),))] > 0
    assert m[("storyworld_episodes", (("state", "completed"),))] == 1
