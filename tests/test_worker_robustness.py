"""A real worker process against jobs that misbehave: a 5 MB job is dead-lettered with the
reason and the worker goes on; a render that ignores the request to stop does not keep a
SIGTERMed worker alive past its grace period, and its job goes back to the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from storyworld.protocol import Job, RenderSpec


def _job(i: int, **options: object) -> Job:
    spec = RenderSpec(text="x", duration_s=1, width=64, height=48, fps=8, options=options)
    return Job(
        job_id=f"rb-b{i:03d}-a1",
        episode_id="rb",
        beat_id=f"b{i}",
        beat_index=i,
        attempt=1,
        backend="bench",
        spec=spec,
    )


def _worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "storyworld.worker.cli", "--backends", "bench",
         "--worker-id", name, "--env-file", ""],
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _until(cond, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_oversized_job_is_dead_lettered_and_the_worker_goes_on(runtime, test_env) -> None:
    q = runtime.queue
    big = json.loads(_job(0).to_json())
    big["spec"]["text"] = "x" * 5_000_000
    q.inject("rb-b000-a1", json.dumps(big), "bench")
    token = q.acquire_engine_lease({"engine": "test"}, 60)
    assert token and q.enqueue([_job(1)], token) == 1
    w = _worker(test_env, "robust")
    try:
        _until(lambda: q.r.xlen(q.keys.results) >= 1)  # the next job ran
        letters = {d.job_id: d for d in q.dead_letters()}
        reason = letters["rb-b000-a1"].reason
        assert "exceeds the limit" in reason and "5000" in reason.replace(",", "")
        assert q.stats().counters["dead"] == 1
    finally:
        w.send_signal(signal.SIGTERM)
        w.communicate(timeout=30)


@pytest.mark.slow
def test_sigterm_exits_after_the_grace_period_handing_a_hung_job_back(runtime, test_env) -> None:
    q = runtime.queue
    token = q.acquire_engine_lease({"engine": "test"}, 60)
    assert token and q.enqueue([_job(0, sleep_s=600, ignore_stop=True)], token) == 1
    w = _worker({**test_env, "SHUTDOWN_GRACE_SECONDS": "1"}, "stuck")
    try:
        _until(lambda: q.r.zscore(q.keys.inflight, "rb-b000-a1|stuck") is not None)
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        out = w.communicate(timeout=30)[0].decode()
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0, out
    assert time.monotonic() - t0 < 15  # grace 1 s + 5 s for a render that does not stop
    assert "did not stop within the grace period" in out
    assert q.r.zscore(q.keys.waiting, "rb-b000-a1") is not None  # waiting again, at once
    assert json.loads(q.r.hget(q.keys.data, "rb-b000-a1"))["delivery"] == 1


def test_a_failed_upload_leaves_none_of_the_attempts_files(runtime) -> None:
    """The keyframe upload fails (a store refusing it): the clip stored just before is
    removed, and the job is reported failed (transient, so the engine retries it)."""
    import threading

    from storyworld.protocol import parse_result
    from storyworld.queue import JobQueue, connect
    from storyworld.storage import StorageError
    from storyworld.worker.backends.animatic import AnimaticBackend
    from storyworld.worker.loop import Worker

    real = runtime.store

    class RefusesKeyframes:  # the real local store, with one fault injected
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(real, name)

        def put_file(self, key: str, path, **kw):  # type: ignore[no-untyped-def]
            if key.endswith("keyframe.png"):
                raise StorageError("bucket refused the keyframe", transient=False)
            return real.put_file(key, path, **kw)

    spec = RenderSpec(text="x", duration_s=1, width=64, height=48, fps=8)
    job = Job(job_id="up-b000-a1", episode_id="up", beat_id="b0", beat_index=0, attempt=1,
              backend="animatic", spec=spec)  # fmt: skip
    q = runtime.queue
    token = q.acquire_engine_lease({"engine": "test"}, 60)
    assert token and q.enqueue([job], token) == 1
    clients = connect(runtime.settings, runtime.redis_url, role="test-worker")
    wq = JobQueue.from_settings(runtime.settings, clients.fast, clients.blocking)
    backends = {"animatic": AnimaticBackend(runtime.settings)}
    store = RefusesKeyframes()
    w = Worker(runtime.settings, wq, store, backends, worker_id="uploader", max_jobs=1)  # type: ignore[arg-type]
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    t.join(60)
    clients.close()
    entries = q.r.xrange(q.keys.results, "-", "+")
    result = parse_result(entries[-1][1][b"r"])
    assert result.status == "failed" and "keyframe" in (result.error or "")
    from storyworld.storage import clip_key

    assert real.head(clip_key("up", 0, 1)) is None  # the clip stored first is gone


@pytest.mark.slow
def test_a_render_past_its_deadline_is_stopped_and_reported_failed(runtime, test_env) -> None:
    q = runtime.queue
    token = q.acquire_engine_lease({"engine": "test"}, 60)
    assert token and q.enqueue([_job(0, sleep_s=600), _job(1)], token) == 2
    w = _worker({**test_env, "RENDER_TIMEOUT_SECONDS": "1"}, "slowpoke")
    try:
        _until(lambda: q.r.xlen(q.keys.results) >= 2)  # the stuck one, then the next one
    finally:
        w.send_signal(signal.SIGTERM)
        w.communicate(timeout=30)
    from storyworld.protocol import parse_result

    results = {
        r.job_id: r
        for r in (parse_result(f[b"r"]) for _id, f in q.r.xrange(q.keys.results, "-", "+"))
    }
    assert results["rb-b000-a1"].status == "failed"
    assert "deadline of 1 s" in (results["rb-b000-a1"].error or "")
    assert results["rb-b000-a1"].error_kind == "transient"
    assert results["rb-b001-a1"].status == "succeeded"  # the worker went on
