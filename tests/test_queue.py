"""The Redis job protocol, on a real server: atomic moves, leases, dead letters, fencing."""

from __future__ import annotations

import time

import pytest
import redis

from storyworld.protocol import Job, RenderSpec, Result, ResultStatus
from storyworld.queue import JobQueue, Keys


def make_job(i: int, backend: str = "animatic", vram: float = 0.0) -> Job:
    spec = RenderSpec(text=f"beat {i}", duration_s=1, width=64, height=48, fps=8)
    return Job(
        job_id=f"ep-b{i:03d}-a1",
        episode_id="ep",
        beat_id=f"b{i}",
        beat_index=i,
        attempt=1,
        backend=backend,
        min_vram_gb=vram,
        spec=spec,
    )


@pytest.fixture
def q(redis_url: str, key_prefix: str) -> JobQueue:
    r = redis.Redis.from_url(redis_url)
    return JobQueue(
        r,
        keys=Keys(jobs=f"{key_prefix}:jobs", results=f"{key_prefix}:results"),
        lease_s=0.3,
        max_deliveries=2,
    )


@pytest.fixture
def token(q: JobQueue) -> str:
    t = q.acquire_engine_lease({"engine": "test"}, 30)
    assert t
    return t


def ok_result(job: Job, worker: str = "w1") -> Result:
    return Result(
        job_id=job.job_id,
        episode_id=job.episode_id,
        beat_id=job.beat_id,
        attempt=job.attempt,
        status=ResultStatus.SUCCEEDED,
        worker_id=worker,
        backend=job.backend,
    )


def test_waiting_jobs_are_llen_of_the_job_queue(q: JobQueue, token: str) -> None:
    assert q.enqueue([make_job(i) for i in range(3)], token) == 3
    assert q.r.llen(q.keys.jobs) == 3
    assert q.stats().waiting == 3


def take(q: JobQueue, worker: str, backends: list[str], vram: float = 0.0):  # type: ignore[no-untyped-def]
    return q.take(worker, backends, 0.05, vram)


def test_oldest_job_first_and_lease_recorded(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    res = take(q, "w1", ["animatic"])
    assert res is not None and res.job.job_id == "ep-b000-a1" and res.job.delivery == 1
    assert q.r.zscore(q.keys.inflight, "ep-b000-a1|w1") is not None
    assert q.r.hget(q.keys.data, "ep-b000-a1") == res.raw.encode()
    assert q.r.llen(q.keys.jobs) == 1


def test_cpu_worker_never_takes_a_job_it_cannot_run(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0, "svd"), make_job(1, "animatediff", vram=16)], token)
    assert take(q, "cpu", ["animatic"]) is None
    # A GPU worker with too little memory does not take the 16 GB job either.
    res = take(q, "small-gpu", ["svd", "animatediff"], vram=8)
    assert res is not None and res.job.backend == "svd"
    assert take(q, "small-gpu", ["svd", "animatediff"], vram=8) is None
    assert q.r.llen(q.keys.jobs) == 1
    assert take(q, "big-gpu", ["animatediff"], vram=80) is not None
    assert q.r.llen(q.keys.jobs) == 0


def test_unparseable_messages_go_to_dead_letters(q: JobQueue, token: str) -> None:
    q.r.lpush(q.keys.jobs, "{not json")  # e.g. pushed by an old producer
    q.enqueue([make_job(0)], token)
    q.r.rpush(q.keys.wake("animatic"), '{"v": 1, "job_id": "bad", "backend": "animatic"}')
    assert take(q, "w1", ["animatic"]) is None  # the malformed one, dead-lettered
    assert take(q, "w1", ["animatic"]).job.job_id == "ep-b000-a1"  # type: ignore[union-attr]
    q.tick(token)  # the sweep finds the unreadable message on the waiting list
    dead = {d.job_id: d for d in q.dead_letters()}
    assert dead[""].reason == "unparseable job message" and dead[""].payload == "{not json"
    assert dead["bad"].reason == "job field episode_id: Field required"
    assert q.r.llen(q.keys.jobs) == 0


def test_expired_lease_is_handed_out_again_then_dead_lettered(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0)], token)
    assert take(q, "w1", ["animatic"]) is not None
    time.sleep(0.35)  # the lease (0.3 s) runs out: the worker "died"
    tick = q.tick(token)
    assert tick.reclaimed == ["ep-b000-a1"]
    res = take(q, "w2", ["animatic"])
    assert res is not None and res.job.delivery == 2
    time.sleep(0.35)
    tick = q.tick(token)
    assert tick.reclaimed == [] and list(tick.dead) == ["ep-b000-a1"]
    assert "lease expired on each of 2 deliveries" in q.dead_letters()[0].reason
    assert q.requeue_dead(["ep-b000-a1"]) == (1, [])
    assert q.r.llen(q.keys.jobs) == 1 and q.r.llen(q.keys.dead) == 0
    assert take(q, "w3", ["animatic"]).job.delivery == 1  # type: ignore[union-attr]


def test_heartbeat_renews_leases_and_reports_lost_jobs(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0)], token)
    take(q, "w1", ["animatic"])
    for _ in range(3):
        time.sleep(0.15)
        assert q.heartbeat("w1", {"host": "h"}, ["ep-b000-a1"]).lost == []
    tick = q.tick(token)
    assert tick.reclaimed == [] and tick.in_flight == {"ep-b000-a1": "w1"}
    time.sleep(0.35)
    assert q.tick(token).reclaimed == ["ep-b000-a1"]
    assert q.heartbeat("w1", {}, ["ep-b000-a1"]).lost == ["ep-b000-a1"]


def test_results_are_kept_until_applied(q: JobQueue, token: str) -> None:
    job = make_job(0)
    q.enqueue([job], token)
    take(q, "w1", ["animatic"])
    q.ack("w1", ok_result(job))
    assert q.r.zcard(q.keys.inflight) == 0 and q.r.hlen(q.keys.data) == 0
    first = q.tick(token)
    assert len(first.results) == 1
    # The engine crashed before applying: after recovery the same result comes again.
    again = q.tick(token, recover=True)
    assert again.results == first.results
    assert q.ack_and_wait(again.results, 0.05) is None  # applied: acknowledged
    assert q.tick(token).results == [] and q.r.llen(q.keys.results_processing) == 0
    # Through the blocking path: BLMOVE, then the acknowledgement rides on the next wait.
    q.r.lpush(q.keys.results, "r1")
    assert q.ack_and_wait([], 1) == "r1"
    assert q.r.lrange(q.keys.results_processing, 0, -1) == [b"r1"]
    assert q.ack_and_wait(["r1"], 0.05) is None
    assert q.r.llen(q.keys.results_processing) == 0


def test_only_the_lease_holder_dispatches(q: JobQueue, token: str) -> None:
    assert q.acquire_engine_lease({"engine": "other"}, 30) is None
    assert q.enqueue([make_job(0)], "not-the-token") == -1
    assert q.r.llen(q.keys.jobs) == 0
    assert not q.tick("not-the-token").leader
    q.release_engine_lease(token)
    assert q.acquire_engine_lease({"engine": "other"}, 30) is not None


def test_cancel_withdraws_waiting_jobs_and_flags_held_ones(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    take(q, "w1", ["animatic"])
    assert q.cancel_jobs(["ep-b000-a1", "ep-b001-a1"]) == 1
    assert q.r.llen(q.keys.jobs) == 0 and q.r.llen(q.keys.wake("animatic")) == 0
    assert q.heartbeat("w1", {}, ["ep-b000-a1"]).cancelled == ["ep-b000-a1"]


def test_release_puts_a_job_back_at_the_front(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    take(q, "w1", ["animatic"])
    assert q.release("ep-b000-a1", "w1", "animatic")
    res = take(q, "w2", ["animatic"])
    assert res is not None and res.job.job_id == "ep-b000-a1" and res.job.delivery == 1


def test_lost_wake_entries_are_repaired(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    q.r.delete(q.keys.wake("animatic"))  # a worker died between BLMPOP and reserve
    assert take(q, "w1", ["animatic"]) is None
    assert q.tick(token, repair=True).repaired == 2
    assert take(q, "w1", ["animatic"]).job.job_id == "ep-b000-a1"  # type: ignore[union-attr]


def test_events_stream_carries_heartbeats_and_uploads(q: JobQueue, token: str) -> None:
    job = make_job(0)
    q.enqueue([job], token)
    take(q, "w1", ["animatic"])
    q.heartbeat("w1", {"host": "pod-1", "progress": "0.5"}, ["ep-b000-a1"])
    q.ack("w1", ok_result(job))
    kinds = [kind for _id, kind, _data in q.read_events("0", None)]
    assert kinds == ["enqueued", "started", "heartbeat", "done"]
    hb = q.read_events("0", None)[2][2]
    assert hb["host"] == "pod-1" and hb["progress"] == "0.5"


def test_workers_gone_for_a_day_leave_the_registry(q: JobQueue, token: str) -> None:
    q.heartbeat("fresh", {"host": "h"}, [])
    q.r.zadd(q.keys.workers, {"long-gone": time.time() - 2 * 86400})
    q.tick(token)
    assert [m.decode() for m in q.r.zrange(q.keys.workers, 0, -1)] == ["fresh"]
