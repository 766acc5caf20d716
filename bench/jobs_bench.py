"""The Jobs screen's queries with 100,000 jobs (results: BENCHMARKS.md).

    python bench/jobs_bench.py [--jobs 100000] [--database sqlite|postgresql://...]

Writes N job rows (one episode, a mix of states and backends), then times what the screen
asks for: the first page, a page deep in the list, a filtered page with its count, a text
search, and the count behind a bulk action's confirmation. Median of 5 runs each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from storyworld.config import load_settings
from storyworld.engine import jobs, services
from storyworld.engine.models import Beat, JobRow
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import open_runtime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--database", default="sqlite", help="sqlite (a temp file) or a URL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-jobs-") as tmp:
        env = {"STORYWORLD_HOME": str(Path(tmp) / "home")}
        if args.database != "sqlite":
            env["DATABASE_URL"] = args.database
        rt = open_runtime(load_settings(env=env, env_file=None), role="bench")
        try:
            run(rt, args.jobs)
        finally:
            rt.close()


def run(rt, n: int) -> None:  # type: ignore[no-untyped-def]
    ep = services.create_episode(rt, plan_script("[1s] One."), script="x", wake=False)
    with rt.sessions.begin() as s:
        beat = s.scalar(select(Beat.id).where(Beat.episode_id == ep["id"]))
        states = ("succeeded", "succeeded", "failed", "dead", "queued", "rendering")
        backends = ("animatic", "svd", "animatediff", "wan")
        for start in range(0, n, 10_000):
            s.execute(JobRow.__table__.insert(), [
                {"id": f"{ep['id']}-b000-a{i}", "beat_id": beat, "episode_id": ep["id"],
                 "attempt": i, "backend": backends[i % 4], "state": states[i % 6],
                 "worker_id": f"pod-{i % 50}",
                 "payload": f'{{"spec": {{"text": "shot {i} of the lighthouse"}}}}',
                 "queued_at": float(i)}
                for i in range(start + 1, min(n, start + 10_000) + 1)
            ])  # fmt: skip
    cases = {
        "first page (no filter)": lambda: jobs.browse(rt, jobs.JobQuery(), 0, 50),
        "page 1000 (offset 50,000)": lambda: jobs.browse(rt, jobs.JobQuery(), 50_000, 50),
        "state:failed backend:svd, page + count": lambda: jobs.browse(
            rt, jobs.parse_query("state:failed backend:svd"), 0, 50),
        "text search 'shot 4242'": lambda: jobs.browse(rt, jobs.parse_query("'shot 4242'"), 0, 50),
        "bulk count state:dead (retry)": lambda: jobs.count(rt, jobs.parse_query("state:dead"),
                                                            "retry"),
    }  # fmt: skip
    print(f"{n} jobs, {rt.db.url.get_backend_name()}")
    for name, fn in cases.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        print(f"  {name:<40} {statistics.median(times) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
