"""The Redis job protocol, on a real server: atomic moves, leases, dead letters, fencing."""

from __future__ import annotations

import time

import pytest
import redis
from redis_servers import cluster_client

from storyworld.protocol import Job, RenderSpec, Result, ResultStatus, parse_job
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


SERVERS = ["redis", "valkey", "cluster"]


@pytest.fixture(params=SERVERS)
def q(request: pytest.FixtureRequest, key_prefix: str) -> JobQueue:
    """The same tests on the shared Redis, the embedded valkey and a 3-master cluster (with
    a hash-tagged queue name, so every key of a script is in one slot)."""
    if request.param == "cluster":
        r = cluster_client(request.getfixturevalue("cluster_url"))
        keys = Keys(jobs=f"{{{key_prefix}}}:gpu:jobs")
    else:
        url = request.getfixturevalue("redis_url" if request.param == "redis" else "valkey_url")
        r = redis.Redis.from_url(url)
        keys = Keys(jobs=f"{key_prefix}:jobs", results=f"{key_prefix}:results")
    return JobQueue(r, keys=keys, lease_s=0.3, max_deliveries=2, reclaim_interval_s=0)


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
    assert q.r.type(q.keys.jobs) == b"list"  # `redis-cli LLEN storyworld:gpu:jobs` works
    assert q.r.llen(q.keys.jobs) == 3 == q.waiting()
    assert q.stats().waiting == 3


def test_llen_of_the_job_queue_follows_every_way_a_job_waits_or_leaves(
    q: JobQueue, token: str
) -> None:
    def counts() -> tuple[int, int]:
        return q.r.llen(q.keys.jobs), q.r.zcard(q.keys.waiting)

    assert q.enqueue([make_job(i) for i in range(5)], token) == 5
    assert counts() == (5, 5)
    q.enqueue([make_job(0)], token)  # already waiting: counted once
    assert counts() == (5, 5)
    first = take(q, "w1", ["animatic"])  # claimed
    assert first is not None and counts() == (4, 4)
    second = take(q, "w2", ["animatic"])
    assert second is not None
    assert q.release(second.job.job_id, "w2", "animatic")  # handed back
    assert counts() == (4, 4)
    assert q.cancel_jobs(["ep-b004-a1"]) == 1  # withdrawn
    assert counts() == (3, 3)
    # A worker finishing a job takes the next one in the same script.
    nxt = q.ack("w1", ok_result(first.job), take_next=["animatic"])
    assert nxt is not None and counts() == (2, 2)
    # Its lease runs out: the tick hands it out again, then it dies on a second delivery.
    q.r.zadd(q.keys.inflight, {f"{nxt[0]}|w1": 0}, xx=True)
    tick = q.tick(token, recover=True)
    assert nxt[0] in tick.reclaimed and counts() == (3, 3)
    again = take(q, "w3", ["animatic"])
    assert again is not None and counts() == (2, 2)
    q.dead_letter(again.raw, again.job.job_id, "w3", "cannot run")
    assert counts() == (2, 2)
    moved, refused = q.requeue_dead([again.job.job_id])
    assert (moved, refused) == (1, []) and counts() == (3, 3)
    while take(q, "w4", ["animatic"]) is not None:
        pass
    assert counts() == (0, 0)


def take(q: JobQueue, worker: str, backends: list[str], vram: float = 0.0):  # type: ignore[no-untyped-def]
    return q.take(worker, backends, 0.05, vram)


def test_oldest_job_first_and_lease_recorded(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    res = take(q, "w1", ["animatic"])
    assert res is not None and res.job.job_id == "ep-b000-a1" and res.job.delivery == 1
    assert q.r.zscore(q.keys.inflight, "ep-b000-a1|w1") is not None
    assert q.r.hget(q.keys.data, "ep-b000-a1") == res.raw.encode()
    assert q.waiting() == 1


def test_cpu_worker_never_takes_a_job_it_cannot_run(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0, "svd"), make_job(1, "animatediff", vram=16)], token)
    assert take(q, "cpu", ["animatic"]) is None
    # A GPU worker with too little memory does not take the 16 GB job either.
    res = take(q, "small-gpu", ["svd", "animatediff"], vram=8)
    assert res is not None and res.job.backend == "svd"
    assert take(q, "small-gpu", ["svd", "animatediff"], vram=8) is None
    assert q.waiting() == 1
    assert take(q, "big-gpu", ["animatediff"], vram=80) is not None
    assert q.waiting() == 0


def test_unreadable_jobs_go_to_dead_letters_and_count(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0)], token)
    # A message no engine wrote (an old producer), under an id of its own.
    q.r.hset(q.keys.data, "bad", '{"v": 1, "job_id": "bad", "backend": "animatic"}')
    q.r.zadd(q.keys.waiting, {"bad": 1})
    q.r.lpush(q.keys.jobs, "bad")
    q.r.rpush(q.keys.wake("animatic"), "bad", "no-such-job")
    assert take(q, "w1", ["animatic"]) is None  # the unknown id is skipped, the bad one filed
    assert take(q, "w1", ["animatic"]).job.job_id == "ep-b000-a1"  # type: ignore[union-attr]
    dead = {d.job_id: d for d in q.dead_letters()}
    assert dead["bad"].reason == "job field episode_id: Field required"
    assert q.stats().dead == 1 and q.stats().counters["dead"] == 1  # filed by a worker
    assert q.tick(token).dead == {"bad": "job field episode_id: Field required"}


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
    assert q.stats().counters["dead"] == 1
    assert q.requeue_dead(["ep-b000-a1"]) == (1, [])
    assert q.waiting() == 1 and q.stats().dead == 0
    assert take(q, "w3", ["animatic"]).job.delivery == 1  # type: ignore[union-attr]


def test_reclaim_and_requeue_keep_the_memory_class(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0, "svd", vram=16)], token)
    assert take(q, "w1", ["svd"], vram=24) is not None
    time.sleep(0.35)
    assert q.tick(token).reclaimed == ["ep-b000-a1"]
    assert take(q, "small", ["svd"], vram=8) is None  # still a 16 GB job
    assert take(q, "big", ["svd"], vram=16) is not None
    time.sleep(0.35)
    assert list(q.tick(token).dead) == ["ep-b000-a1"]
    assert q.requeue_dead() == (1, [])
    assert q.r.llen(q.keys.wake("svd@16")) == 1 and q.r.llen(q.keys.wake("svd")) == 0
    q.drop_dead()


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
    assert q.ack("w1", ok_result(job)) is None
    assert q.r.zcard(q.keys.inflight) == 0 and q.r.hlen(q.keys.data) == 0
    first = q.tick(token, recover=True)  # creates the consumer group, reads the result
    assert len(first.results) == 1
    # The engine crashed before applying: after recovery the same result comes again.
    again = q.tick(token, recover=True)
    assert again.results == first.results
    assert q.ack_and_wait(again.results, 0.05) is None  # applied: acknowledged at the tick
    assert q.tick(token).results == [] and q.r.xlen(q.keys.results) == 0
    # Through the blocking path: a batch per read, acknowledged by the next tick.
    q.wake_engine("one")
    q.wake_engine("two")
    one = q.ack_and_wait([], 1)
    two = q.ack_and_wait([one], 1)  # type: ignore[list-item]
    assert '"one"' in one and '"two"' in two  # type: ignore[operator]
    # `one` was applied (acknowledged by this tick); `two` was not, so it comes again.
    assert q.tick(token, recover=True).results == [two]
    q.ack_and_wait([two], 0.01)  # type: ignore[list-item]
    assert q.tick(token).results == [] and q.r.xlen(q.keys.results) == 0


def test_ack_takes_the_next_job_in_the_same_round_trip(q: JobQueue, token: str) -> None:
    jobs = [make_job(i) for i in range(3)]
    q.enqueue(jobs, token)
    res = take(q, "w1", ["animatic"])
    assert res is not None
    nxt = q.ack("w1", ok_result(res.job), take_next=["svd", "animatic"], vram_gb=24)
    assert nxt is not None and nxt[0] == "ep-b001-a1"
    assert q.r.zscore(q.keys.inflight, "ep-b001-a1|w1") is not None
    nxt = q.ack("w1", ok_result(jobs[1]), take_next=["animatic"])
    assert nxt is not None and nxt[0] == "ep-b002-a1"
    assert q.ack("w1", ok_result(jobs[2]), take_next=["animatic"]) is None
    assert q.waiting() == 0 and q.r.zcard(q.keys.inflight) == 0
    # The jobs taken along with an acknowledgement are announced as started all the same.
    events = [(kind, data.get("job_id")) for _id, kind, data in q.read_events("0", None)]
    assert events == [
        ("enqueued", None),
        ("started", "ep-b000-a1"),
        ("done", "ep-b000-a1"),
        ("started", "ep-b001-a1"),
        ("done", "ep-b001-a1"),
        ("started", "ep-b002-a1"),
        ("done", "ep-b002-a1"),
    ]


def test_only_the_lease_holder_dispatches(q: JobQueue, token: str) -> None:
    assert q.acquire_engine_lease({"engine": "other"}, 30) is None
    assert q.enqueue([make_job(0)], "not-the-token") == -1
    assert q.waiting() == 0
    assert not q.tick("not-the-token").leader
    q.release_engine_lease(token)
    assert q.acquire_engine_lease({"engine": "other"}, 30) is not None


def test_cancel_withdraws_waiting_jobs_and_flags_held_ones(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1)], token)
    take(q, "w1", ["animatic"])
    assert q.cancel_jobs(["ep-b000-a1", "ep-b001-a1"]) == 1
    assert q.waiting() == 0 and q.r.hlen(q.keys.data) == 1  # only the held one's payload
    assert q.r.llen(q.keys.wake("animatic")) == 0  # counts (autoscalers) stay exact
    assert take(q, "w2", ["animatic"]) is None
    assert q.heartbeat("w1", {}, ["ep-b000-a1"]).cancelled == ["ep-b000-a1"]


def test_release_puts_a_job_back_at_the_front(q: JobQueue, token: str) -> None:
    q.enqueue([make_job(0), make_job(1, vram=16)], token)
    take(q, "w1", ["animatic"])
    assert q.release("ep-b000-a1", "w1", "animatic")
    res = take(q, "w2", ["animatic"])
    assert res is not None and res.job.job_id == "ep-b000-a1" and res.job.delivery == 1
    res = take(q, "w2", ["animatic"], vram=16)
    assert res is not None and q.release(res.job.job_id, "w2", "animatic", 16)
    assert q.r.llen(q.keys.wake("animatic@16")) == 1


def test_lost_wake_entries_are_repaired_onto_the_same_wake_list(q: JobQueue, token: str) -> None:
    q.repair_age_ms = 0
    q.enqueue([make_job(0), make_job(1, "svd", vram=16)], token)
    # A worker died between popping the ids and claiming them.
    q.r.delete(q.keys.wake("animatic"))
    q.r.delete(q.keys.wake("svd@16"))
    assert take(q, "w1", ["animatic"]) is None
    assert q.tick(token, repair=True).repaired == 2
    assert q.r.llen(q.keys.wake("svd@16")) == 1 and q.r.llen(q.keys.wake("svd")) == 0
    assert take(q, "w1", ["animatic"]).job.job_id == "ep-b000-a1"  # type: ignore[union-attr]
    assert take(q, "small", ["svd"], vram=8) is None
    assert take(q, "big", ["svd"], vram=16).job.job_id == "ep-b001-a1"  # type: ignore[union-attr]


def test_events_stream_carries_heartbeats_and_uploads(q: JobQueue, token: str) -> None:
    job = make_job(0)
    q.enqueue([job], token)
    take(q, "w1", ["animatic"])
    q.heartbeat("w1", {"host": "pod-1", "progress": "0.5"}, ["ep-b000-a1"])
    q.ack("w1", ok_result(job))
    events = q.read_events("0", None)
    assert [kind for _id, kind, _data in events] == ["enqueued", "started", "heartbeat", "done"]
    assert events[1][2] == {
        "job_id": "ep-b000-a1",
        "worker": "w1",
        "episode_id": "ep",
        "beat_index": 0,
        "backend": "animatic",
        "delivery": 1,
    }
    hb = events[2][2]
    assert hb["host"] == "pod-1" and hb["progress"] == "0.5"


def test_workers_gone_for_a_day_leave_the_registry(q: JobQueue, token: str) -> None:
    q.heartbeat("fresh", {"host": "h"}, [])
    q.r.zadd(q.keys.workers, {"long-gone": time.time() - 2 * 86400})
    q.tick(token, repair=True)
    assert [m.decode() for m in q.r.zrange(q.keys.workers, 0, -1)] == ["fresh"]


def test_every_key_is_in_one_slot_with_a_hash_tag() -> None:
    from redis.crc import key_slot

    k = Keys(jobs="{storyworld}:gpu:jobs")
    names = [
        k.jobs, k.results, k.inflight, k.data, k.cancelled, k.dead, k.dead_new, k.wake("svd@16"),
        k.workers, k.worker("w"), k.worker_logs("w"), k.events, k.engine_lease, k.paused, k.stats,
    ]  # fmt: skip
    assert len({key_slot(n.encode()) for n in names}) == 1
    # The default names stay as the seed wrote them.
    d = Keys()
    assert (d.jobs, d.results, d.inflight) == (
        "storyworld:gpu:jobs",
        "storyworld:gpu:results",
        "storyworld:gpu:inflight",
    )


def _calls(r: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started, counting those made inside scripts."""
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in r.info("commandstats").items()
        if name != "cmdstat_info"
    }


def _cost(r: redis.Redis, action) -> dict[str, int]:  # type: ignore[no-untyped-def]
    before = _calls(r)
    action()
    after = _calls(r)
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def _costs_of_one_job(r: redis.Redis, q: JobQueue, token: str) -> dict[str, dict[str, int]]:
    q.heartbeat("w1", {"host": "h"}, [])
    got: list = []
    cost = {
        "reserve": _cost(r, lambda: got.append(q.reserve("w1", "", ["animatic"]))),
        "ack+next": _cost(
            r,
            lambda: got.append(
                q.ack("w1", ok_result(parse_job(got[0][1])), take_next=["animatic"])
            ),
        ),
        "tick": _cost(r, lambda: q.tick(token, repair=True)),
        "heartbeat": _cost(r, lambda: q.heartbeat("w1", {"host": "h"}, [got[1][0]])),
    }
    assert got[0] and got[1]
    return cost


def test_reserve_and_tick_cost_the_same_with_100000_jobs_waiting(
    valkey_url: str, key_prefix: str
) -> None:
    """Counted by the server (INFO commandstats counts calls inside scripts too): taking a
    job, finishing it and taking the next, and the engine's tick with every part, issue the
    same commands whether 100 or 100,000 jobs wait. Each of them is O(1), O(log N) or
    bounded by a LIMIT (the repair looks at the 16 oldest jobs at most); none reads a list
    or the backlog. The first pass only loads the scripts."""
    r = redis.Redis.from_url(valkey_url)
    costs = []
    for n, prefix in (
        (100, f"{key_prefix}-warm"),
        (100, f"{key_prefix}-small"),
        (100_000, f"{key_prefix}-big"),
    ):
        q = JobQueue(r, keys=Keys(jobs=f"{prefix}:jobs"), reclaim_interval_s=0, repair_age_s=0)
        token = q.acquire_engine_lease({"engine": "t"}, 30)
        assert token
        template = make_job(0).to_json()
        for start in range(0, n, 10_000):
            with r.pipeline(transaction=False) as p:
                ids = [f"ep-b{i:06d}-a1" for i in range(start, min(n, start + 10_000))]
                p.hset(
                    q.keys.data,
                    mapping={i: template.replace("ep-b000-a1", i) for i in ids},
                )
                p.zadd(q.keys.waiting, {i: 1 for i in ids})
                p.lpush(q.keys.jobs, *ids)
                p.lpush(q.keys.wake("animatic"), *ids)
                p.execute()
        assert q.waiting() == n
        q.tick(token, recover=True)  # consumer group created
        cost = _costs_of_one_job(r, q, token)
        costs.append(cost)
    r.flushdb()  # the private server's 100,000 jobs
    assert costs[1] == costs[2]
    assert sum(costs[1]["ack+next"].values()) <= 11  # evalsha + 10 inside
