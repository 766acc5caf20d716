"""Prometheus metrics of a deployment, read when scraped (nothing polls in between).

A scrape costs one pipelined round trip to Redis (queue lengths, the engine lease, worker
ids) plus one pipeline of HGETALLs for the workers' heartbeats, and five grouped queries on
the database. `storyworld_jobs_waiting` is `LLEN` of the job queue itself, the number the
deployment guide's `redis-cli LLEN storyworld:gpu:jobs` gives.

The Redis commands this process sent are counted on the client side: `count_commands()`
makes the connections of a client count every command they write (a pipeline of five is
five, a Lua script is one).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import case, func, select

from storyworld.engine.models import Episode, JobRow, JobState
from storyworld.engine.runtime import Runtime

__all__ = ["RENDER_BUCKETS_S", "CommandCounter", "DeploymentCollector", "count_commands", "render"]

#: Render-time buckets (seconds): from a CPU animatic (about a second) to long GPU clips.
RENDER_BUCKETS_S = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

_OUTCOMES = (JobState.SUCCEEDED, JobState.FAILED, JobState.DEAD, JobState.CANCELLED)


class CommandCounter:
    """A thread-safe count of the Redis commands this process wrote."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n


#: The process's counter (every client passed to `count_commands` adds to it).
COMMANDS = CommandCounter()
_counted_classes: dict[type, type] = {}


def count_commands(client: redis.Redis, counter: CommandCounter = COMMANDS) -> None:
    """Make `client`'s connections count the commands they send. Connections made before
    the call are not counted: call it before the first command."""
    pool = client.connection_pool
    base = pool.connection_class
    if getattr(base, "_storyworld_counted", False):
        return
    cls = _counted_classes.get(base)
    if cls is None:

        def pack_command(self: Any, *args: Any) -> Any:
            counter.add(1)
            return base.pack_command(self, *args)

        def pack_commands(self: Any, commands: Iterable[Any]) -> Any:
            commands = list(commands)
            counter.add(len(commands))
            return base.pack_commands(self, commands)

        cls = type(
            f"Counted{base.__name__}",
            (base,),
            {"pack_command": pack_command, "pack_commands": pack_commands,
             "_storyworld_counted": True},
        )  # fmt: skip
        _counted_classes[base] = cls
    pool.connection_class = cls


class DeploymentCollector:
    """A prometheus_client collector over a Runtime: every value read at collection."""

    def __init__(self, rt: Runtime, counter: CommandCounter = COMMANDS) -> None:
        self.rt = rt
        self.counter = counter

    def describe(self) -> Iterator[Metric]:
        return iter(())  # unchecked collector: values come at collect()

    def collect(self) -> Iterator[Metric]:
        yield from self._redis()
        yield from self._database()
        commands = CounterMetricFamily(
            "storyworld_redis_commands",
            "Redis commands this process sent (a pipeline of n counts n, a script 1)",
        )
        commands.add_metric([], self.counter.total)
        yield commands

    # ------------------------------------------------------------------ Redis
    def _redis(self) -> Iterator[Metric]:
        q = self.rt.queue
        k = q.keys
        with q.r.pipeline(transaction=False) as p:
            p.llen(k.jobs)
            p.zcard(k.inflight)
            p.hlen(k.dead)
            p.xlen(k.results)
            waiting, in_flight, dead, results = p.execute()
        if results:
            results = q.results_pending()  # not yet read; read ones await a batch ack
        for name, doc, value in (
            ("storyworld_jobs_waiting", "Jobs waiting (LLEN of the job queue)", waiting),
            ("storyworld_jobs_in_flight", "Jobs held by a worker under a lease", in_flight),
            ("storyworld_dead_letters", "Jobs in the dead-letter list", dead),
            ("storyworld_results_pending", "Results the engine has not applied yet", results),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], int(value))
            yield g
        live = GaugeMetricFamily(
            "storyworld_workers_live",
            "Workers with a live heartbeat, per backend they serve",
            labels=["backend"],
        )
        per_backend: dict[str, int] = {}
        for w in q.workers():
            if w.get("state") in ("gone", "stopped", None):
                continue
            for b in filter(None, (w.get("backends") or "").split(",")):
                per_backend[b] = per_backend.get(b, 0) + 1
        for b, n in sorted(per_backend.items()):
            live.add_metric([b], n)
        yield live
        holder = q.engine_holder()
        leader = GaugeMetricFamily(
            "storyworld_engine_leader",
            "1 while an engine holds the dispatch lease, labelled with its id",
            labels=["engine"],
        )
        leader.add_metric([str(holder.get("engine", "")) if holder else ""], 1 if holder else 0)
        yield leader

    # ------------------------------------------------------------------ database
    def _database(self) -> Iterator[Metric]:
        with self.rt.sessions() as s:
            by_state = s.execute(
                select(JobRow.backend, JobRow.state, func.count()).group_by(
                    JobRow.backend, JobRow.state
                )
            ).all()
            episodes = s.execute(select(Episode.state, func.count()).group_by(Episode.state)).all()
            columns = [
                func.sum(case((JobRow.render_s <= le, 1), else_=0)) for le in RENDER_BUCKETS_S
            ]
            renders = s.execute(
                select(JobRow.backend, func.count(), func.sum(JobRow.render_s), *columns)
                .where(JobRow.render_s.is_not(None))
                .group_by(JobRow.backend)
            ).all()
        waiting = GaugeMetricFamily(
            "storyworld_backend_jobs_waiting",
            "Jobs sent and not yet taken, per backend (from the database)",
            labels=["backend"],
        )
        flying = GaugeMetricFamily(
            "storyworld_backend_jobs_in_flight",
            "Jobs being rendered, per backend (from the database)",
            labels=["backend"],
        )
        outcomes = CounterMetricFamily(
            "storyworld_job_outcomes",
            "Jobs that ended, per backend and outcome (succeeded, failed, dead, cancelled)",
            labels=["backend", "outcome"],
        )
        for backend, state, n in by_state:
            if state == JobState.QUEUED:
                waiting.add_metric([backend], n)
            elif state == JobState.RENDERING:
                flying.add_metric([backend], n)
            elif state in _OUTCOMES:
                outcomes.add_metric([backend, str(state)], n)
        yield waiting
        yield flying
        yield outcomes
        eps = GaugeMetricFamily("storyworld_episodes", "Episodes per state", labels=["state"])
        for state, n in episodes:
            eps.add_metric([str(state)], n)
        yield eps
        hist = HistogramMetricFamily(
            "storyworld_render_seconds",
            "Render time of finished jobs, per backend",
            labels=["backend"],
        )
        for backend, count, total, *cumulative in renders:
            pairs = zip(RENDER_BUCKETS_S, cumulative, strict=True)
            buckets = [(_le(le), int(c or 0)) for le, c in pairs]
            buckets.append(("+Inf", int(count)))
            hist.add_metric([backend], buckets, sum_value=float(total or 0.0))
        yield hist


def _le(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


def render(rt: Runtime, counter: CommandCounter = COMMANDS) -> bytes:
    """The Prometheus text exposition of `rt`'s deployment (read now)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeploymentCollector(rt, counter))  # type: ignore[arg-type]
    return generate_latest(registry)
