"""The Redis job protocol, on a real server: atomic moves, leases, dead letters, fencing."""

from __future__ import annotations

import json
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


def test_oldest_job_first_and_lease_recorded(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    res = q.reserve("w1", ["animatic"], {"host": "h"})
    assert res is not None and json.loads(res.raw)["job_id"] == "ep-b000-a1"
    assert res.deliveries == 1 and res.tokens_left == 1
    assert q.r.zscore(q.keys.inflight, "ep-b000-a1") is not None
    assert q.r.hget(q.keys.holders, "ep-b000-a1") == b"w1"
    assert q.r.hget(q.keys.worker("w1"), "state") == b"busy"


def test_cpu_worker_never_takes_a_job_it_cannot_run(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0, "svd"), make_job(1, "animatediff", vram=16)], token)
    assert q.reserve("cpu", ["animatic"], {}) is None
    # A GPU worker with too little memory does not take the 16 GB job either.
    res = q.reserve("small-gpu", ["svd", "animatediff"], {}, vram_gb=8)
    assert res is not None and json.loads(res.raw)["backend"] == "svd"
    assert q.reserve("small-gpu", ["svd", "animatediff"], {}, vram_gb=8) is None
    assert q.r.llen(q.keys.jobs) == 1
    big = q.reserve("big-gpu", ["animatediff"], {}, vram_gb=80)
    assert big is not None


def test_wake_tokens_only_wake_workers_with_the_backend(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0, "svd")], token)
    assert q.wait_for_work(["animatic"], 0.1) is None
    got = q.wait_for_work(["animatic", "svd"], 1)
    assert got == ("svd", "ep-b000-a1")
    res = q.reserve("w", ["svd"], {}, wanted=got)
    assert res is not None and res.tokens_left == 0


def test_unparseable_message_goes_to_dead_letters(q: JobQueue, token: str) -> None:
    q.r.lpush(q.keys.jobs, "{not json")
    q.enqueue([make_job(0)], token)
    res = q.reserve("w1", ["animatic"], {})
    assert res is not None and json.loads(res.raw)["job_id"] == "ep-b000-a1"
    dead = q.dead_letters()
    assert len(dead) == 1 and dead[0].reason == "unparseable job message"
    assert dead[0].payload == "{not json"
    assert q.r.llen(q.keys.jobs) == 0


def test_expired_lease_is_handed_out_again_then_dead_lettered(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0)], token)
    assert q.reserve("w1", ["animatic"], {}) is not None
    time.sleep(0.35)  # the lease (0.3 s) runs out: the worker "died"
    tick = q.tick(token, [])
    assert tick.reclaimed == ["ep-b000-a1"]
    assert q.wait_for_work(["animatic"], 1) is not None  # a wake token came with it
    res = q.reserve("w2", ["animatic"], {})
    assert res is not None and res.deliveries == 2
    time.sleep(0.35)
    tick = q.tick(token, [])
    assert tick.reclaimed == [] and list(tick.dead) == ["ep-b000-a1"]
    assert "lease expired on each of 2 deliveries" in q.dead_letters()[0].reason
    moved, refused = q.requeue_dead(["ep-b000-a1"])
    assert (moved, refused) == (1, [])
    assert q.r.llen(q.keys.jobs) == 1 and q.r.llen(q.keys.dead) == 0
    assert q.reserve("w3", ["animatic"], {}).deliveries == 1  # type: ignore[union-attr]


def test_heartbeat_renews_leases_and_reports_lost_jobs(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0)], token)
    q.reserve("w1", ["animatic"], {})
    for _ in range(3):
        time.sleep(0.15)
        reply = q.heartbeat("w1", {"host": "h"}, ["ep-b000-a1"])
        assert reply.lost == []
    assert q.tick(token, []).reclaimed == []
    time.sleep(0.35)
    assert q.tick(token, []).reclaimed == ["ep-b000-a1"]
    assert q.heartbeat("w1", {}, ["ep-b000-a1"]).lost == ["ep-b000-a1"]


def test_results_are_kept_until_applied(q: JobQueue, token: str) -> None:
    job = make_job(0)
    q.enqueue([job], token)
    q.reserve("w1", ["animatic"], {})
    q.ack("w1", ok_result(job), ["animatic"], {})
    first = q.tick(token, [])
    assert len(first.results) == 1
    # The engine crashed before applying: the next tick hands the same result again.
    again = q.tick(token, [])
    assert again.results == first.results
    done = q.tick(token, again.results)
    assert done.results == [] and q.r.llen(q.keys.results_processing) == 0


def test_only_the_lease_holder_dispatches(q: JobQueue, token: str) -> None:
    assert q.acquire_engine_lease({"engine": "other"}, 30) is None
    assert q.enqueue([make_job(0)], "not-the-token") == -1
    assert q.r.llen(q.keys.jobs) == 0
    assert not q.tick("not-the-token", []).leader
    q.release_engine_lease(token)
    assert q.acquire_engine_lease({"engine": "other"}, 30) is not None


def test_cancel_withdraws_waiting_jobs_and_flags_held_ones(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    q.reserve("w1", ["animatic"], {})
    assert q.cancel_jobs(["ep-b000-a1", "ep-b001-a1"]) == 1
    assert q.r.llen(q.keys.jobs) == 0
    assert q.heartbeat("w1", {}, ["ep-b000-a1"]).cancelled == ["ep-b000-a1"]


def test_release_puts_a_job_back_at_the_front(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    q.reserve("w1", ["animatic"], {})
    assert q.release("ep-b000-a1", "w1", "animatic")
    res = q.reserve("w2", ["animatic"], {})
    assert res is not None and json.loads(res.raw)["job_id"] == "ep-b000-a1"
    assert res.deliveries == 1


def test_events_stream_carries_heartbeats_and_uploads(q: JobQueue, token: str) -> None:
    job = make_job(0)
    q.enqueue([job], token)
    q.reserve("w1", ["animatic"], {"host": "pod-1"})
    q.heartbeat("w1", {"host": "pod-1", "progress": "0.5"}, ["ep-b000-a1"])
    q.ack("w1", ok_result(job), ["animatic"], {"host": "pod-1"})
    kinds = [kind for _id, kind, _data in q.read_events("0", None)]
    assert kinds == ["enqueued", "started", "heartbeat", "done"]
    hb = q.read_events("0", None)[2][2]
    assert hb["host"] == "pod-1" and hb["progress"] == "0.5"
