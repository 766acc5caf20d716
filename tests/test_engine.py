"""The engine's decision loop against real Redis, a real worker and the real store."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select
from test_e2e_local import wait_for

from storyworld.engine import services
from storyworld.engine.models import Beat, JobRow, Transition, Upload
from storyworld.engine.orchestrator import Orchestrator, backoff_delay
from storyworld.engine.planner import plan_script
from storyworld.protocol import ErrorKind, Result, ResultStatus
from storyworld.worker.backends.animatic import AnimaticBackend
from storyworld.worker.backends.base import PermanentRenderError, TransientRenderError

SCRIPT = "# Two\n\n[1s] One.\n\n[1s] Two.\n"


def create(rt, script: str = SCRIPT, **kw):  # type: ignore[no-untyped-def]
    return services.create_episode(rt, plan_script(script), script=script, **kw)["id"]


def finished(rt, episode_id: str):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        d = services.episode_detail(rt, episode_id)
        return d if d["state"] in ("completed", "failed", "cancelled") else None

    return wait_for(check, timeout=60)


class Flaky(AnimaticBackend):
    """Fails the first `n` renders with `error`, then renders."""

    def __init__(self, settings, n: int, error: Exception) -> None:  # type: ignore[no-untyped-def]
        super().__init__(settings)
        self.n = n
        self.error = error
        self.calls = 0
        self.lock = threading.Lock()

    def render(self, ctx):  # type: ignore[no-untyped-def]
        with self.lock:
            self.calls += 1
            fail = self.calls <= self.n
        if fail:
            raise self.error
        return super().render(ctx)


def test_transient_failures_retry_with_backoff(runtime, background) -> None:
    ep = create(runtime)
    flaky = Flaky(runtime.settings, 2, TransientRenderError("CUDA out of memory"))
    background.engine(runtime)
    background.worker(runtime, backends={"animatic": flaky})
    d = finished(runtime, ep)
    assert d["state"] == "completed"
    attempts = [j["state"] for b in d["beats"] for j in b["jobs"]]
    assert attempts.count("failed") == 2 and attempts.count("succeeded") == 2
    reasons = [h["reason"] for h in d["history"] if h["entity"] == "beat" and h["to"] == "pending"]
    assert any("retry in" in r and "out of memory" in r for r in reasons)


def test_permanent_failure_fails_the_episode_at_once(runtime, background) -> None:
    ep = create(runtime, "[1s] Only beat.")
    bad = Flaky(runtime.settings, 99, PermanentRenderError("prompt refused by safety filter"))
    background.engine(runtime)
    background.worker(runtime, backends={"animatic": bad})
    d = finished(runtime, ep)
    assert d["state"] == "failed"
    assert bad.calls == 1
    assert "safety filter" in d["error"]
    assert d["beats"][0]["jobs"][0]["error_kind"] == "permanent"
    # The operator retries once the cause is fixed: new attempt, episode completes.
    bad.n = 0
    services.retry_episode(runtime, ep)
    d = finished(runtime, ep)
    assert d["state"] == "completed"
    assert [j["state"] for j in d["beats"][0]["jobs"]] == ["failed", "succeeded"]


def test_permanent_failure_falls_back_to_another_backend(runtime, background) -> None:
    ep = create(runtime, "[1s] Only beat.", backend="veo")
    background.engine(runtime)
    veo = Flaky(
        runtime.settings, 99, PermanentRenderError("model retired", fallback_backend="animatic")
    )
    veo.name = "veo"
    background.worker(runtime, backends={"veo": veo, "animatic": AnimaticBackend(runtime.settings)})
    d = finished(runtime, ep)
    assert d["state"] == "completed"
    assert [j["backend"] for j in d["beats"][0]["jobs"]] == ["veo", "animatic"]


def test_duplicate_results_are_applied_once(runtime, background) -> None:
    ep = create(runtime, "[1s] Only beat.")
    orch = background.engine(runtime)
    background.worker(runtime)
    d = finished(runtime, ep)
    job = d["beats"][0]["jobs"][0]
    with runtime.sessions() as s:
        uploads_before = s.scalar(select(func.count()).select_from(Upload))
        transitions_before = s.scalar(select(func.count()).select_from(Transition))
    result = Result(
        job_id=job["job_id"],
        episode_id=ep,
        beat_id=d["beats"][0]["id"],
        attempt=1,
        status=ResultStatus.FAILED,
        worker_id="ghost",
        backend="animatic",
        error="late duplicate",
        error_kind=ErrorKind.TRANSIENT,
    )
    # Pushed twice on Redis (a redelivered job reporting again) and applied directly.
    for _ in range(2):
        runtime.queue.r.xadd(runtime.queue.keys.results, {"r": result.to_json()})
    runtime.queue.wake_engine("test")
    assert orch.apply_result(result) is False
    # Both copies read and acknowledged (they leave the stream with the next tick).
    wait_for(lambda: runtime.queue.r.xlen(runtime.queue.keys.results) == 0)
    d2 = services.episode_detail(runtime, ep)
    assert d2["state"] == "completed"
    assert [j["state"] for j in d2["beats"][0]["jobs"]] == ["succeeded"]
    with runtime.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Upload)) == uploads_before
        assert s.scalar(select(func.count()).select_from(Transition)) == transitions_before


def test_engine_restart_reconciles_jobs_lost_from_redis(runtime, background) -> None:
    ep = create(runtime, "[1s] A.\n\n[1s] B.\n\n[1s] C.")
    # First engine dispatches, then "crashes" (no workers yet) and Redis loses a job.
    orch1 = Orchestrator(runtime.settings, runtime.sessions, runtime.queue, runtime.store)
    orch1.step()
    assert runtime.queue.waiting() == 3
    lost_id = runtime.queue.r.zrange(runtime.queue.keys.waiting, 0, 0)[0].decode()
    runtime.queue.r.zrem(runtime.queue.keys.waiting, lost_id)
    runtime.queue.r.rpop(runtime.queue.keys.jobs)
    runtime.queue.r.hdel(runtime.queue.keys.data, lost_id)
    runtime.queue.r.delete(runtime.queue.keys.engine_lease)  # the crashed engine's lease ran out
    # The second engine reconciles at start: the lost job is sent again.
    orch2 = Orchestrator(runtime.settings, runtime.sessions, runtime.queue, runtime.store)
    orch2.step()
    waiting = [x.decode() for x in runtime.queue.r.zrange(runtime.queue.keys.waiting, 0, -1)]
    assert sorted(waiting) == sorted([lost_id, *[w for w in waiting if w != lost_id]])
    assert lost_id in waiting and len(waiting) == 3
    orch2.shutdown()
    background.engine(runtime)
    background.worker(runtime)
    d = finished(runtime, ep)
    assert d["state"] == "completed"
    for b in d["beats"]:
        assert [j["state"] for j in b["jobs"]] == ["succeeded"]
    reasons = [h["reason"] for h in d["history"]]
    assert any("absent from Redis" in r for r in reasons)


def test_second_engine_stands_by(runtime) -> None:
    a = Orchestrator(
        runtime.settings, runtime.sessions, runtime.queue, runtime.store, engine_id="engine-a"
    )
    b = Orchestrator(
        runtime.settings, runtime.sessions, runtime.queue, runtime.store, engine_id="engine-b"
    )
    a.step()
    b.step()
    assert a.is_leader and not b.is_leader
    assert "engine-a" in b.status
    a.shutdown()
    b.step()
    assert b.is_leader
    b.shutdown()


def test_cancel_stops_the_episode(runtime) -> None:
    ep = create(runtime, "[1s] A.\n\n[1s] B.")
    orch = Orchestrator(runtime.settings, runtime.sessions, runtime.queue, runtime.store)
    orch.step()
    assert runtime.queue.waiting() == 2
    d = services.cancel_episode(runtime, ep)
    assert d["state"] == "cancelled"
    assert all(b["state"] == "cancelled" for b in d["beats"])
    assert runtime.queue.waiting() == 0
    orch.step()
    assert runtime.queue.waiting() == 0
    orch.shutdown()


def test_backoff_grows_exponentially_with_jitter() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(n, 2.0, 300.0, rng) for n in range(1, 10)]
    assert 1.0 <= delays[0] <= 3.0
    assert delays[4] > delays[0] * 4
    assert max(delays) <= 450.0


def test_every_transition_has_a_reason(runtime, background) -> None:
    ep = create(runtime)
    background.engine(runtime)
    background.worker(runtime)
    finished(runtime, ep)
    with runtime.sessions() as s:
        rows = s.scalars(select(Transition)).all()
        assert rows and all(t.reason for t in rows)
        assert {t.to_state for t in rows if t.entity == "episode"} >= {
            "planned",
            "rendering",
            "composing",
            "completed",
        }
        beats = s.scalars(select(Beat)).all()
        assert all(b.state == "done" for b in beats)
        assert s.scalar(select(func.count()).select_from(JobRow)) == 2


@pytest.mark.parametrize("script", ["", "[0s] nothing", "[99s] too long"])
def test_invalid_scripts_are_refused_before_queueing(runtime, script: str) -> None:
    from storyworld.engine.planner import ScriptError

    with pytest.raises(ScriptError):
        services.plan_text(runtime, script)
    assert runtime.queue.waiting() == 0
