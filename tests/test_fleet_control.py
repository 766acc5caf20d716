"""Fleet control against real Redis, a real engine and a real worker: drain (finish the job
in hand, take no more), resume, stop; per-backend pause of dispatch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from storyworld.engine import fleet, services
from storyworld.engine.models import JobRow
from storyworld.engine.planner import plan_script

ONE = "# One\n\n[1s] The lamp is lit.\n"


def until(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _state(runtime: Any, episode_id: str) -> str:
    return services.episode_detail(runtime, episode_id)["state"]


def _beat(runtime: Any, worker_id: str) -> dict[str, str]:
    return next((w for w in runtime.queue.workers() if w.get("id") == worker_id), {})


def test_drain_resume_and_stop_a_worker(runtime, background) -> None:
    background.engine(runtime)
    w = background.worker(runtime)
    until(lambda: _beat(runtime, w.id).get("state") == "idle")
    fleet.command_worker(runtime, w.id, "drain")
    # An idle worker hears it at once (its control list is in its blocking wait).
    until(lambda: _beat(runtime, w.id).get("state") == "draining")
    ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
    until(lambda: runtime.clients.fast.llen(runtime.queue.keys.jobs) == 1)
    time.sleep(0.5)  # a drained worker takes nothing: the job still waits
    assert runtime.clients.fast.llen(runtime.queue.keys.jobs) == 1
    with runtime.sessions() as s:
        assert {j.state for j in s.scalars(select(JobRow))} == {"queued"}
    fleet.command_worker(runtime, w.id, "resume")
    until(lambda: _state(runtime, ep["id"]) == "completed")
    fleet.command_worker(runtime, w.id, "stop")
    until(lambda: w.stopping.is_set() is not False)
    assert w.stopping.is_set()
    try:
        fleet.command_worker(runtime, "no-such-worker", "drain")
    except services.NotFound as e:
        assert "no-such-worker" in str(e)
    else:
        raise AssertionError("a command to an unknown worker was accepted")


def test_pause_and_resume_dispatch_per_backend(runtime, background) -> None:
    background.engine(runtime)
    r = runtime.clients.fast
    out = fleet.set_backend_paused(runtime, "animatic", True)
    assert out["paused_backends"] == ["animatic"]
    ep = services.create_episode(runtime, plan_script(ONE), script=ONE)
    other = services.create_episode(runtime, plan_script(ONE), script=ONE, backend="svd")
    until(lambda: r.llen(runtime.queue.keys.jobs) == 1)  # svd dispatched, animatic held
    time.sleep(0.3)
    with runtime.sessions() as s:
        assert [j.backend for j in s.scalars(select(JobRow))] == ["svd"]
    assert services.episode_detail(runtime, ep["id"])["beats"][0]["state"] == "pending"
    fleet.set_backend_paused(runtime, "animatic", False)
    until(lambda: r.llen(runtime.queue.keys.jobs) == 2)
    with runtime.sessions() as s:
        assert sorted(j.backend for j in s.scalars(select(JobRow))) == ["animatic", "svd"]
    assert other["backend"] == "svd"
