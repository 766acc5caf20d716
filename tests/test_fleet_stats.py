"""The autoscaling signal: waiting jobs per backend and memory class, live workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from storyworld.queue import JobQueue, Keys
from storyworld.queue.fleet import fleet_stats, vram_class_of
from tests.test_queue import make_job


@pytest.fixture
def q(redis_url: str, key_prefix: str) -> JobQueue:
    r = redis.Redis.from_url(redis_url)
    return JobQueue(r, keys=Keys(jobs=f"{key_prefix}:jobs", results=f"{key_prefix}:results"))


def beat(q: JobQueue, worker: str, backends: str, vram_gb: float, job: str = "") -> None:
    gpu = json.dumps({"name": "X", "mem_total_mb": int(vram_gb * 1024)}) if vram_gb else ""
    q.heartbeat(worker, {"id": worker, "backends": backends, "gpu": gpu, "job": job}, [])


def test_vram_class_is_the_largest_class_that_fits() -> None:
    assert vram_class_of(0) == 0
    assert vram_class_of(7.9) == 0
    assert vram_class_of(23.6) == 16  # a "24 GB" card reports a little less
    assert vram_class_of(24) == 24
    assert vram_class_of(500) == 141


def test_counts_per_backend_and_memory_class(q: JobQueue) -> None:
    token = q.acquire_engine_lease({"engine": "test"}, 30)
    assert token
    jobs = [make_job(0), make_job(1), make_job(2, "svd", 20), make_job(3, "svd", 40)]
    jobs.append(make_job(4, "svd"))
    q.enqueue(jobs, token)
    beat(q, "cpu-1", "animatic", 0)
    beat(q, "gpu-24", "animatic,svd", 24, job="x")
    beat(q, "gpu-80", "svd", 80)
    beat(q, "gone", "svd", 80)
    q.r.delete(q.keys.worker("gone"))  # its heartbeat expired

    st = fleet_stats(q.r, q.keys).as_dict()
    assert st["workers"] == 3
    assert st["by_backend"]["animatic"] == {"waiting": 2, "workers": 2, "busy": 1}
    assert st["by_backend"]["svd"] == {"waiting": 3, "workers": 2, "busy": 1}
    assert st["by_backend"]["veo"] == {"waiting": 0, "workers": 0, "busy": 0}
    assert st["wake_lists"] == {"animatic": 2, "svd": 1, "svd@24": 1, "svd@48": 1}
    # Class 24: jobs needing 24 GB; workers with at least 24 GB.
    assert st["by_vram_class"]["24"] == {"waiting": 1, "workers": 2, "busy": 1}
    assert st["by_vram_class"]["48"] == {"waiting": 1, "workers": 1, "busy": 0}
    assert st["by_vram_class"]["0"]["workers"] == 3
    assert st["by_backend_vram"]["svd"]["48"] == {"waiting": 1, "workers": 1, "busy": 0}
    assert st["by_backend_vram"]["svd"]["24"] == {"waiting": 1, "workers": 2, "busy": 1}
    # The numbers are the wake lists' LLEN, what KEDA's list scaler reads.
    assert q.r.llen(q.keys.wake("svd@48")) == 1


def test_queue_stats_json_carries_the_fleet(
    tmp_path: Path, redis_url: str, key_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from storyworld.cli import main
    from tests.conftest import make_env

    env = make_env(tmp_path, redis_url, key_prefix)
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    assert main(["--env-file", str(tmp_path / ".env"), "queue", "stats", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fleet"]["by_backend"]["animatic"] == {"waiting": 0, "workers": 0, "busy": 0}
    assert set(out["fleet"]["by_vram_class"]) == {"0", "8", "16", "24", "32", "48", "80", "141"}
