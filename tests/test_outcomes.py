"""Outcomes: a batch of results applied in one transaction, exactly once, with a constant
number of queries whatever its size; stale attempts said so."""

from __future__ import annotations

import logging

from sqlalchemy import event, select

from storyworld.engine import services
from storyworld.engine.models import Transition
from storyworld.engine.orchestrator import Orchestrator
from storyworld.engine.outcomes import Batch
from storyworld.engine.planner import plan_script
from storyworld.protocol import ArtifactRef, Result, ResultStatus, parse_job


def _dispatch(rt, beats: int) -> tuple[Orchestrator, list]:  # type: ignore[no-untyped-def]
    script = "\n\n".join(f"[1s] Beat {i}." for i in range(beats))
    services.create_episode(rt, plan_script(script), script=script)
    orch = Orchestrator(rt.settings, rt.sessions, rt.queue, rt.store)
    orch.step()
    q = rt.queue
    jobs = [parse_job(x) for x in q.r.hmget(q.keys.data, q.r.zrange(q.keys.waiting, 0, -1))]
    assert len(jobs) == beats
    return orch, jobs


def _ok(job, worker: str = "w1") -> Result:  # type: ignore[no-untyped-def]
    key = f"episodes/{job.episode_id}/beats/{job.beat_index:03d}/a{job.attempt}/clip.mp4"
    return Result(
        job_id=job.job_id,
        episode_id=job.episode_id,
        beat_id=job.beat_id,
        attempt=job.attempt,
        status=ResultStatus.SUCCEEDED,
        worker_id=worker,
        backend=job.backend,
        artifacts=[
            ArtifactRef(kind="clip", key=key, size=1, sha256="0" * 64, content_type="video/mp4")
        ],
    )


def _statements(rt, fn) -> int:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def count(*args):  # type: ignore[no-untyped-def]
        seen.append(args[2])

    event.listen(rt.db, "before_cursor_execute", count)
    try:
        fn()
    finally:
        event.remove(rt.db, "before_cursor_execute", count)
    return len(seen)


def test_a_batch_costs_the_same_queries_whatever_its_size(runtime) -> None:
    orch, jobs = _dispatch(runtime, 40)
    small = [_ok(j).to_json() for j in jobs[:5]]
    large = [_ok(j).to_json() for j in jobs[5:]]
    n_small = _statements(runtime, lambda: orch.outcomes.apply(Batch(small)))
    n_large = _statements(runtime, lambda: orch.outcomes.apply(Batch(large)))
    assert n_large == n_small  # no query per result or per artifact
    orch.shutdown()


def test_duplicates_in_one_batch_apply_once_and_history_keeps_its_order(runtime) -> None:
    orch, jobs = _dispatch(runtime, 2)
    a, b = (_ok(j).to_json() for j in jobs)
    applied = orch.outcomes.apply(Batch([a, a, b, a]))
    assert applied.changed == 2
    d = services.episode_detail(runtime, jobs[0].episode_id)
    assert [bt["state"] for bt in d["beats"]] == ["done", "done"]
    assert len(d["artifacts"]) == 2
    with runtime.sessions() as s:
        rows = s.scalars(select(Transition).order_by(Transition.id)).all()
    done = [(t.entity, t.to_state) for t in rows if t.to_state in ("succeeded", "done")]
    assert done == [("job", "succeeded"), ("beat", "done")] * 2
    assert orch.outcomes.apply(Batch([a, b])).changed == 0
    orch.shutdown()


def test_a_result_of_a_stale_attempt_is_logged_as_such(runtime, caplog) -> None:
    orch, jobs = _dispatch(runtime, 1)
    job = jobs[0]
    with runtime.sessions.begin() as s:  # the beat moved on to attempt 2
        from storyworld.engine.models import Beat

        beat = s.get(Beat, job.beat_id)
        beat.attempts = 2
    with caplog.at_level(logging.INFO, logger="storyworld.engine"):
        orch.outcomes.apply(Batch([_ok(job).to_json()]))
        wrong = _ok(job).model_copy(update={"attempt": 7})
        orch.outcomes.apply(Batch([wrong.to_json()]))
    text = caplog.text
    assert "stale attempt 1" in text and "unknown job" not in text
    assert "names attempt 7, but the job is attempt 1" in text
    orch.shutdown()
