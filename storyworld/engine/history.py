"""History of the queue, from the database alone: queue depth, throughput, failure rate and
render time p50/p95 per backend over the last hour or day, and episode estimates (ETA from
measured render times, GPU-seconds, cost).

Nothing is sampled or stored to keep it: every job row already has its `queued_at`,
`started_at`, `finished_at`, `render_s` and state, so a window is one query over the jobs
of that window (bounded by the window, indexed by time). It costs **no Redis command** —
on a metered Redis the console's history panel is free.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select

from storyworld.engine.models import Beat, BeatState, Episode, JobRow, JobState
from storyworld.engine.runtime import Runtime

__all__ = ["WINDOWS", "BackendHistory", "episode_costs", "history", "percentile"]

#: The windows the console offers: name -> seconds.
WINDOWS = {"hour": 3600.0, "day": 86400.0}
_ENDED = (JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD)


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class BackendHistory:
    backend: str
    depth: tuple[int, ...]  # jobs waiting at the end of each bucket
    done: tuple[int, ...]  # jobs that succeeded in each bucket
    failed: tuple[int, ...]  # jobs that failed or were dead-lettered in each bucket
    render_p50_s: float | None
    render_p95_s: float | None

    @property
    def throughput_per_h(self) -> float:
        return float(sum(self.done))

    @property
    def failure_rate(self) -> float | None:
        ended = sum(self.done) + sum(self.failed)
        return sum(self.failed) / ended if ended else None


def history(
    rt: Runtime, window_s: float = 3600.0, buckets: int = 30, now: float | None = None
) -> dict[str, Any]:
    """{"window_s", "bucket_s", "backends": {backend: BackendHistory}, "total": BackendHistory}."""
    now = time.time() if now is None else now
    start = now - window_s
    width = window_s / buckets
    with rt.sessions() as s:
        rows = s.execute(
            select(JobRow.backend, JobRow.state, JobRow.queued_at, JobRow.started_at,
                   JobRow.finished_at, JobRow.render_s)
            .where(or_(JobRow.queued_at >= start, JobRow.finished_at >= start,
                       and_(JobRow.started_at.is_(None), JobRow.finished_at.is_(None),
                            JobRow.state == JobState.QUEUED)))
        ).all()  # fmt: skip
    per: dict[str, dict[str, Any]] = {}

    def slot(backend: str) -> dict[str, Any]:
        return per.setdefault(backend, {"depth": [0] * buckets, "done": [0] * buckets,
                                        "failed": [0] * buckets, "renders": []})  # fmt: skip

    for backend, state, queued, started, finished, render_s in rows:
        d = slot(backend)
        # Waiting from queued_at until taken (started_at), or until it ended untaken.
        left = started if started is not None else finished
        for i in range(buckets):
            t = start + (i + 1) * width
            if queued <= t and (left is None or left > t):
                d["depth"][i] += 1
        if finished is not None and finished >= start and state in _ENDED:
            i = min(buckets - 1, int((finished - start) / width))
            d["done" if state == JobState.SUCCEEDED else "failed"][i] += 1
            if state == JobState.SUCCEEDED and render_s is not None:
                d["renders"].append(render_s)
    out = {
        b: BackendHistory(
            b, tuple(d["depth"]), tuple(d["done"]), tuple(d["failed"]),
            percentile(d["renders"], 50), percentile(d["renders"], 95),
        )
        for b, d in sorted(per.items())
    }  # fmt: skip
    renders = [r for d in per.values() for r in d["renders"]]
    total = BackendHistory(
        "all",
        tuple(sum(h.depth[i] for h in out.values()) for i in range(buckets)),
        tuple(sum(h.done[i] for h in out.values()) for i in range(buckets)),
        tuple(sum(h.failed[i] for h in out.values()) for i in range(buckets)),
        percentile(renders, 50),
        percentile(renders, 95),
    )
    return {"window_s": window_s, "bucket_s": width, "backends": out, "total": total}


def episode_costs(
    rt: Runtime, episode_id: str, *, gpu_cost_per_hour: float = 0.0, workers: int = 1
) -> dict[str, Any]:
    """GPU-seconds spent on an episode (every attempt), its cost estimate, and an ETA from
    the measured median render time of its backend (over the last day) for the beats left,
    spread over `workers` live workers."""
    with rt.sessions() as s:
        ep = s.get(Episode, episode_id)
        if ep is None:
            return {}
        spent = [r for (r,) in s.execute(
            select(JobRow.render_s).where(JobRow.episode_id == ep.id,
                                          JobRow.render_s.is_not(None)))]  # fmt: skip
        left = [
            (b.backend or ep.backend)
            for b in s.scalars(select(Beat).where(Beat.episode_id == ep.id))
            if b.state not in (BeatState.DONE, BeatState.CANCELLED)
        ]
        since = time.time() - WINDOWS["day"]
        measured: dict[str, list[float]] = {}
        for backend, render_s in s.execute(
            select(JobRow.backend, JobRow.render_s).where(
                JobRow.render_s.is_not(None), JobRow.finished_at >= since,
                JobRow.state == JobState.SUCCEEDED)):  # fmt: skip
            measured.setdefault(backend, []).append(render_s)
    gpu_s = float(sum(spent))
    eta: float | None = 0.0 if not left else None
    if left and all(measured.get(b) for b in left):
        eta = sum(percentile(measured[b], 50) or 0.0 for b in left) / max(1, workers)
    return {
        "gpu_seconds": round(gpu_s, 3),
        "cost": round(gpu_s / 3600.0 * gpu_cost_per_hour, 4) if gpu_cost_per_hour else None,
        "beats_left": len(left),
        "eta_s": None if eta is None else round(eta, 1),
    }
