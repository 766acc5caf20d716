"""How many results per second the engine applies, on SQLite.

    PYTHONPATH=. python bench/engine_apply.py --results 5000
    PYTHONPATH=. python bench/engine_apply.py --results 5000 --redis redis://127.0.0.1:6379/0

Without --redis: `Outcomes.apply` on batches of 100 (what one tick brings), each result a
success with a clip artifact and an upload, against a fresh SQLite file (WAL, as the
engine runs it). With --redis: the whole loop — the results wait on the result list of a
private key prefix, an engine (EngineHost) drains and applies them; timed from its start
until every job row is applied.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from storyworld.config import load_settings
from storyworld.engine.models import (
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    JobRow,
    JobState,
    make_engine,
)
from storyworld.engine.outcomes import Batch, Outcomes
from storyworld.engine.retry import RetryPolicy
from storyworld.protocol import ArtifactRef, Result, ResultStatus, UploadEvent

BEATS_PER_EPISODE = 100


def _seed(sessions: sessionmaker, n: int) -> list[Result]:  # type: ignore[type-arg]
    results = []
    with sessions.begin() as s:
        for e in range((n + BEATS_PER_EPISODE - 1) // BEATS_PER_EPISODE):
            ep = Episode(
                id=f"ep{e:05d}",
                title="bench",
                script="x",
                backend="animatic",
                width=64,
                height=48,
                fps=8,
                options={},
                state=EpisodeState.RENDERING,
            )
            s.add(ep)
            # A cancelled beat keeps the episode from composing (no clips exist here).
            s.add(
                Beat(
                    id=f"{ep.id}bx",
                    episode_id=ep.id,
                    index=9999,
                    text="t",
                    scene="",
                    captions=[],
                    duration_s=1.0,
                    backend="animatic",
                    state=BeatState.CANCELLED,
                    attempts=0,
                )
            )
            for i in range(min(BEATS_PER_EPISODE, n - e * BEATS_PER_EPISODE)):
                job_id = f"{ep.id}-b{i:03d}-a1"
                beat = Beat(
                    id=f"{ep.id}b{i:03d}",
                    episode_id=ep.id,
                    index=i,
                    text="t",
                    scene="",
                    captions=[],
                    duration_s=1.0,
                    backend="animatic",
                    state=BeatState.RENDERING,
                    attempts=1,
                )
                s.add(beat)
                s.add(
                    JobRow(
                        id=job_id,
                        beat_id=beat.id,
                        episode_id=ep.id,
                        attempt=1,
                        backend="animatic",
                        state=JobState.RENDERING,
                        payload="{}",
                        queued_at=time.time(),
                    )
                )
                key = f"episodes/{ep.id}/beats/{i:03d}/a1/clip.mp4"
                results.append(
                    Result(
                        job_id=job_id,
                        episode_id=ep.id,
                        beat_id=beat.id,
                        attempt=1,
                        status=ResultStatus.SUCCEEDED,
                        worker_id="bench",
                        backend="animatic",
                        artifacts=[
                            ArtifactRef(
                                kind="clip",
                                key=key,
                                size=1000,
                                sha256="0" * 64,
                                content_type="video/mp4",
                            )
                        ],
                        uploads=[UploadEvent(key=key, size=1000, seconds=0.01, bytes_per_s=1e5)],
                    )
                )
    return results


def _applied(sessions: sessionmaker) -> int:  # type: ignore[type-arg]
    with sessions() as s:
        return int(s.scalar(select(func.count()).where(JobRow.state == JobState.SUCCEEDED)) or 0)


def direct(n: int, db_dir: Path) -> float:
    engine = make_engine(f"sqlite:///{db_dir / 'bench.db'}")
    sessions = sessionmaker(engine, expire_on_commit=False)
    results = [r.to_json() for r in _seed(sessions, n)]
    outcomes = Outcomes(
        load_settings(env={}, env_file=None),
        sessions,
        RetryPolicy(load_settings(env={}, env_file=None), random.Random(0)),
    )
    start = time.perf_counter()
    for i in range(0, n, 100):
        outcomes.apply(Batch(results[i : i + 100]))
    elapsed = time.perf_counter() - start
    assert _applied(sessions) == n
    engine.dispose()
    return n / elapsed


def through_redis(n: int, db_dir: Path, url: str) -> float:
    from storyworld.engine.host import EngineHost
    from storyworld.engine.runtime import open_runtime

    prefix = f"bench-apply-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        env={
            "REDIS_URL": url,
            "JOB_QUEUE": f"{prefix}:jobs",
            "RESULT_QUEUE": f"{prefix}:results",
            "DATABASE_URL": f"sqlite:///{db_dir / 'bench-redis.db'}",
            "STORAGE_URL": (db_dir / "artifacts").as_uri(),
        },
        env_file=None,
    )
    rt = open_runtime(settings, role="bench")
    try:
        results = _seed(rt.sessions, n)
        raw = [r.to_json() for r in results]
        for i in range(0, n, 1000):
            rt.queue.r.lpush(rt.queue.keys.results, *raw[i : i + 1000])
        start = time.perf_counter()
        host = EngineHost(rt, engine_id="bench").start()
        while _applied(rt.sessions) < n:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        host.stop()
        keys = list(rt.queue.r.scan_iter(match=f"{prefix}:*"))
        if keys:
            rt.queue.r.delete(*keys)
    finally:
        rt.close()
    return n / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=int, default=5000)
    ap.add_argument("--redis", help="also run the whole loop against this Redis")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rate = direct(args.results, Path(tmp))
        print(f"Outcomes.apply, batches of 100, SQLite: {rate:,.0f} results/s")
        if args.redis:
            rate = through_redis(args.results, Path(tmp), args.redis)
            print(f"engine loop through Redis, SQLite: {rate:,.0f} results/s")


if __name__ == "__main__":
    main()
