"""The job protocol on Redis.

Every multi-step change of a job's state is one Lua script (one round trip, atomic), so a
crash between two commands cannot lose a job:

- waiting: the list `JOB_QUEUE` (LPUSH new, oldest at the tail; `LLEN` = jobs waiting),
  and the same payload on `…:wake:{backend}`: idle workers block (BLMPOP) on the wake lists
  of the backends they have, so a CPU worker never wakes for, or swallows, an SVD job.
- in flight: members `job_id|worker` of `…:inflight` scored by lease deadline (server
  clock), payloads in `…:data`. Workers renew leases with their heartbeat; the engine's
  tick hands out again jobs whose lease ran out (the payload's `delivery` counts up), or
  dead-letters them after `MAX_DELIVERIES`.
- results: the list `RESULT_QUEUE`; the engine moves each to `…:processing` and removes it
  only once it is applied to the database (reliable, effectively once).
- events: a capped stream consoles block on, fed from inside the scripts (no extra client
  commands).

A rendered job costs 5 client commands end to end: BLMPOP, reserve and ack on the worker,
BLMOVE and its acknowledgement on the engine (the enqueue is one script per batch).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from storyworld.protocol import (
    EventKind,
    FinishedEvent,
    Job,
    LeaseHolder,
    ProtocolError,
    Result,
    StartedEvent,
    WakeReason,
    WorkerGoneEvent,
    event_fields,
    job_id_of,
    parse_dead_letter,
    parse_event_data,
    parse_job,
    parse_lease_holder,
    wake_message,
)
from storyworld.queue.keys import Keys, wake_suffix

__all__ = [
    "DeadLetter",
    "HeartbeatReply",
    "JobQueue",
    "QueueStats",
    "Reservation",
    "TickResult",
]

_SCRIPTS = (
    "enqueue",
    "reserve",
    "heartbeat",
    "ack",
    "dead_letter",
    "tick",
    "requeue_dead",
    "cancel",
    "release",
)


def _load_scripts() -> dict[str, str]:
    folder = resources.files("storyworld.queue") / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {name: prelude + "\n" + (folder / f"{name}.lua").read_text() for name in _SCRIPTS}


_SOURCES = _load_scripts()


def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _flatten(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out += [k, "" if v is None else (v if isinstance(v, str) else json.dumps(v))]
    return out


def _counted(items: list[str]) -> list[str]:
    return [str(len(items)), *items]


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass
class Reservation:
    raw: str
    job: Job


@dataclass
class HeartbeatReply:
    lost: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


@dataclass
class TickResult:
    leader: bool
    results: list[str] = field(default_factory=list)
    in_flight: dict[str, str] = field(default_factory=dict)  # job id -> worker
    reclaimed: list[str] = field(default_factory=list)
    dead: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    repaired: int = 0


@dataclass
class DeadLetter:
    job_id: str
    reason: str
    payload: str
    at: float
    worker: str
    #: How an operator names this entry: its job id, else `entry:<sha1 of the raw entry>`
    #: (an unreadable entry has no job id; requeue_dead.lua accepts both).
    ref: str = ""


@dataclass
class QueueStats:
    waiting: int
    in_flight: int
    dead: int
    results_pending: int
    workers_alive: int
    workers_known: int
    oldest_waiting_s: float | None
    counters: dict[str, int]
    paused: bool
    engine: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "in_flight": self.in_flight,
            "dead": self.dead,
            "results_pending": self.results_pending,
            "workers": self.workers_alive,
            "workers_known": self.workers_known,
            "oldest_waiting_s": self.oldest_waiting_s,
            "counters": self.counters,
            "paused": self.paused,
            "engine": self.engine,
        }


class JobQueue:
    """All Redis operations of engine, workers and operators, by name."""

    def __init__(
        self,
        fast: redis.Redis,
        blocking: redis.Redis | None = None,
        keys: Keys | None = None,
        *,
        lease_s: float = 30.0,
        heartbeat_ttl_s: float = 330.0,
        max_deliveries: int = 3,
        events_maxlen: int = 2000,
        engine_lease_s: float = 360.0,
    ) -> None:
        self.r = fast
        self.rb = blocking or fast
        self.keys = keys or Keys()
        self.lease_ms = int(lease_s * 1000)
        self.hb_ttl = int(heartbeat_ttl_s)
        self.max_deliveries = max_deliveries
        self.events_maxlen = events_maxlen
        self.engine_lease_ms = int(engine_lease_s * 1000)
        self._scripts = {name: fast.register_script(src) for name, src in _SOURCES.items()}

    @classmethod
    def from_settings(
        cls, settings: Any, fast: redis.Redis, blocking: redis.Redis | None = None
    ) -> JobQueue:
        return cls(
            fast,
            blocking,
            Keys.from_settings(settings),
            lease_s=settings.lease_s,
            heartbeat_ttl_s=settings.heartbeat_ttl_s,
            max_deliveries=settings.max_deliveries,
            events_maxlen=settings.events_maxlen,
            engine_lease_s=settings.engine_lease_s,
        )

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    # ---------------------------------------------------------------- engine side
    def acquire_engine_lease(
        self, holder: LeaseHolder | dict[str, Any], lease_s: float
    ) -> str | None:
        """Try to become the dispatching engine. Returns the fencing token (the lease value,
        checked atomically by every enqueue and tick) or None if another engine holds it."""
        if isinstance(holder, dict):
            holder = LeaseHolder(**{k: v for k, v in holder.items() if k != "nonce"})
        token = holder.to_token()
        ok = self.r.set(self.keys.engine_lease, token, nx=True, px=int(lease_s * 1000))
        return token if ok else None

    def release_engine_lease(self, token: str) -> None:
        """Give the lease up (clean shutdown), only if we still hold it, and tell standbys
        at once: a busy one blocks on the handover list, an idle one on the result list."""
        script = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('DEL', KEYS[1]) end return 0"
        )
        if self.r.eval(script, 1, self.keys.engine_lease, token):
            with self.r.pipeline(transaction=False) as p:
                p.lpush(self.keys.engine_handover, "1")
                p.expire(self.keys.engine_handover, 60)
                p.lpush(self.keys.results, wake_message(WakeReason.HANDOVER))
                p.execute()

    def wake_standbys(self) -> None:
        """Unblock engines standing by (one stopping in this process, say); each looks at
        the lease again, nothing else changes."""
        with self.r.pipeline(transaction=False) as p:
            p.lpush(self.keys.engine_handover, "1")
            p.expire(self.keys.engine_handover, 60)
            p.lpush(self.keys.results, wake_message(WakeReason.STOPPING))
            p.execute()

    def engine_lease_state(self) -> tuple[str | None, int]:
        """(lease value or None, milliseconds it has left; -1 for a lease without expiry)
        in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            p.get(self.keys.engine_lease)
            p.pttl(self.keys.engine_lease)
            value, pttl = p.execute()
        return (_s(value) if value is not None else None), max(-1, int(pttl))

    def take_over_engine_lease(self, seen: str, holder: LeaseHolder, lease_s: float) -> str | None:
        """Replace a lease whose holder stopped answering, only if it is still `seen` (so
        two standbys cannot both take over). Returns the new fencing token, or None."""
        token = holder.to_token()
        script = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0"
        )
        ok = self.r.eval(script, 1, self.keys.engine_lease, seen, token, int(lease_s * 1000))
        return token if ok else None

    def standby_wait(self, timeout_s: float) -> bool:
        """An idle standby blocks on the result list like the leader, but puts what it takes
        straight back (an atomic rotation), so the leader still gets it. True if something
        arrived."""
        k = self.keys
        raw = self.rb.blmove(k.results, k.results, max(timeout_s, 0.01), "RIGHT", "LEFT")
        return raw is not None

    def wait_for_handover(self, timeout_s: float) -> bool:
        """A busy standby blocks until the lease should have run out, or a clean handover."""
        return self.rb.blpop([self.keys.engine_handover], max(timeout_s, 0.01)) is not None

    def engine_holder(self) -> dict[str, Any] | None:
        holder = parse_lease_holder(self.r.get(self.keys.engine_lease))
        return holder.public() if holder else None

    def enqueue(self, jobs: list[Job], token: str = "") -> int:
        """Queue jobs in one round trip. Returns -1 if `token` no longer holds the engine
        lease (another engine took over): then nothing was queued."""
        if not jobs:
            return 0
        args: list[Any] = [token, self.keys.wake_prefix, self.events_maxlen]
        for job in jobs:
            args += [wake_suffix(job.backend, job.min_vram_gb), job.to_json()]
        k = self.keys
        return int(self._run("enqueue", [k.engine_lease, k.jobs, k.events], args))

    def tick(
        self,
        token: str,
        *,
        max_results: int = 100,
        repair: bool = False,
        recover: bool = False,
        lease_ms: int | None = None,
    ) -> TickResult:
        """The engine's periodic script (see tick.lua). Unless `recover`, results returned
        by the previous tick count as applied."""
        k = self.keys
        reply = self._run(
            "tick",
            [
                k.engine_lease,
                k.inflight,
                k.data,
                k.jobs,
                k.dead,
                k.dead_new,
                k.events,
                k.stats,
                k.results,
                k.results_processing,
                k.paused,
                k.workers,
            ],
            [
                token,
                lease_ms or self.engine_lease_ms,
                self.max_deliveries,
                k.wake_prefix,
                self.events_maxlen,
                max_results,
                "1" if repair else "0",
                "1" if recover else "0",
            ],
        )
        if int(reply[0]) != 1:
            return TickResult(leader=False)
        in_flight = {}
        for member in reply[1]:
            job_id, _, worker = _s(member).partition("|")
            in_flight[job_id] = worker
        return TickResult(
            leader=True,
            in_flight=in_flight,
            reclaimed=[_s(x) for x in reply[2]],
            dead=_pairs(reply[3]),
            results=[_s(r) for r in reversed(reply[4])],
            paused=bool(int(reply[5])),
            repaired=int(reply[6]),
        )

    def ack_and_wait(self, applied: list[str], timeout_s: float) -> str | None:
        """Acknowledge applied results and block until the next result (or a wake-up)
        arrives, moving it to processing. One round trip."""
        k = self.keys
        with self.rb.pipeline(transaction=False) as p:
            for raw in applied:
                p.lrem(k.results_processing, 1, raw)
            p.blmove(k.results, k.results_processing, max(timeout_s, 0.01), "RIGHT", "LEFT")
            replies = p.execute()
        raw = replies[-1]
        return _s(raw) if raw is not None else None

    def wake_engine(self, reason: str) -> None:
        """Make a blocked engine look at the database now (new episode, retry, pause)."""
        self.r.lpush(self.keys.results, wake_message(reason))

    def cancel_jobs(self, job_ids: list[str]) -> int:
        """Withdraw waiting jobs and ask holders of in-flight ones to stop."""
        if not job_ids:
            return 0
        k = self.keys
        return int(
            self._run(
                "cancel",
                [k.jobs, k.inflight, k.cancelled, k.events],
                [k.wake_prefix, self.events_maxlen, *job_ids],
            )
        )

    def known_job_ids(self) -> set[str]:
        """Ids of the jobs Redis knows: waiting, in flight, or with a result not yet applied.
        For the engine's reconciliation at start-up."""
        k = self.keys
        with self.r.pipeline(transaction=False) as p:
            p.lrange(k.jobs, 0, -1)
            p.zrange(k.inflight, 0, -1)
            p.lrange(k.results, 0, -1)
            p.lrange(k.results_processing, 0, -1)
            waiting, inflight, results, processing = p.execute()
        ids = {_s(x).partition("|")[0] for x in inflight}
        ids.update(job_id_of(_s(raw)) for raw in [*waiting, *results, *processing])
        ids.discard("")
        return ids

    # ---------------------------------------------------------------- worker side
    def wait_for_work(
        self, backends: list[str], timeout_s: float, vram_gb: float = 0.0
    ) -> tuple[str, str] | None:
        """Block until a job this worker can run (backend, GPU memory) is waiting. Returns
        (wake list suffix, payload) popped from its wake list (then `reserve` it), or None
        on timeout."""
        keys = self.keys.wake_lists(backends, vram_gb)
        reply = self.rb.execute_command("BLMPOP", max(timeout_s, 0.01), len(keys), *keys, "RIGHT")
        if not reply:
            return None
        key, values = _s(reply[0]), reply[1]
        return key[len(self.keys.wake_prefix) :], _s(values[0])

    def return_payload(self, suffix: str, payload: str) -> None:
        """Put back a payload taken from a wake list just before deciding to stop."""
        self.r.rpush(self.keys.wake(suffix), payload)

    def reserve(self, worker_id: str, payload: str, job: Job) -> bool:
        """Take the job just popped from a wake list: False if it is no longer waiting."""
        k = self.keys
        event = StartedEvent(
            job_id=job.job_id,
            worker=worker_id,
            episode_id=job.episode_id,
            beat_index=job.beat_index,
            backend=job.backend,
            delivery=job.delivery,
        ).to_json()
        return bool(
            self._run(
                "reserve",
                [k.jobs, k.inflight, k.data, k.events],
                [worker_id, self.lease_ms, self.events_maxlen, payload, job.job_id, event],
            )
        )

    def take(
        self, worker_id: str, backends: list[str], timeout_s: float = 0.01, vram_gb: float = 0.0
    ) -> Reservation | None:
        """Wait for and reserve one job (parsing it); for tools and tests. Malformed
        payloads are dead-lettered."""
        got = self.wait_for_work(backends, timeout_s, vram_gb)
        if got is None:
            return None
        _suffix, payload = got
        try:
            job = parse_job(payload)
        except ProtocolError as e:
            self.dead_letter(payload, job_id_of(payload), worker_id, str(e))
            return None
        if not self.reserve(worker_id, payload, job):
            return None
        return Reservation(raw=payload, job=job)

    def heartbeat(
        self,
        worker_id: str,
        fields: dict[str, Any],
        job_ids: list[str],
        *,
        emit_event: bool = True,
        logs: list[str] | None = None,
    ) -> HeartbeatReply:
        """Refresh the heartbeat and renew the leases of `job_ids`."""
        k = self.keys
        reply = self._run(
            "heartbeat",
            [
                k.worker(worker_id),
                k.workers,
                k.events,
                k.inflight,
                k.cancelled,
                k.worker_logs(worker_id),
            ],
            [
                worker_id,
                self.hb_ttl,
                self.lease_ms,
                self.events_maxlen,
                "1" if emit_event else "0",
                *_counted(job_ids),
                *_counted(_flatten(fields)),
                *_counted(logs or []),
            ],
        )
        return HeartbeatReply(lost=[_s(x) for x in reply[0]], cancelled=[_s(x) for x in reply[1]])

    def ack(self, worker_id: str, result: Result, *, was_cancelled: bool = False) -> None:
        """Report a job's result and release its lease."""
        k = self.keys
        event = FinishedEvent(
            job_id=result.job_id,
            episode_id=result.episode_id,
            worker=worker_id,
            status=result.status.value,
            backend=result.backend,
            error=result.error,
            render_s=result.render_s,
            uploads=list(result.uploads),
        )
        self._run(
            "ack",
            [k.inflight, k.data, k.results, k.events, k.cancelled],
            [
                worker_id,
                result.job_id,
                result.to_json(),
                self.events_maxlen,
                event.to_json(),
                "1" if was_cancelled else "0",
                EventKind.DONE if result.status == "succeeded" else EventKind.FAILED,
            ],
        )

    def release(self, job_id: str, worker_id: str, backend: str) -> bool:
        """Hand a held job back to the front of the queue (worker shutting down)."""
        k = self.keys
        return bool(
            self._run(
                "release",
                [k.inflight, k.data, k.jobs, k.events],
                [job_id, worker_id, k.wake_prefix, backend, self.events_maxlen],
            )
        )

    def dead_letter(self, payload: str, job_id: str, worker_id: str, reason: str) -> None:
        """Dead-letter a taken message that can never run (malformed)."""
        k = self.keys
        self._run(
            "dead_letter",
            [k.jobs, k.dead, k.dead_new, k.events],
            [payload, job_id, reason, worker_id, self.events_maxlen],
        )

    def forget_worker(self, worker_id: str) -> None:
        """A worker leaving cleanly removes its heartbeat at once."""
        with self.r.pipeline(transaction=False) as p:
            p.delete(self.keys.worker(worker_id))
            p.zrem(self.keys.workers, worker_id)
            p.xadd(
                self.keys.events,
                event_fields(EventKind.WORKER_GONE, WorkerGoneEvent(id=worker_id)),
                maxlen=self.events_maxlen,
                approximate=True,
            )
            p.execute()

    # ---------------------------------------------------------------- operators
    def stats(self) -> QueueStats:
        """Queue depths, workers and counters in one round trip (two with workers)."""
        k = self.keys
        with self.r.pipeline(transaction=False) as p:
            p.llen(k.jobs)
            p.zcard(k.inflight)
            p.llen(k.dead)
            p.llen(k.results)
            p.zrange(k.workers, 0, -1)
            p.lindex(k.jobs, -1)
            p.hgetall(k.stats)
            p.exists(k.paused)
            p.get(k.engine_lease)
            waiting, inflight, dead, results, workers, oldest, counters, paused, lease = p.execute()
        alive = 0
        if workers:
            with self.r.pipeline(transaction=False) as p:
                for w in workers:
                    p.exists(k.worker(_s(w)))
                alive = sum(int(x) for x in p.execute())
        oldest_s = None
        if oldest:
            try:
                oldest_s = max(0.0, time.time() - float(json.loads(oldest)["enqueued_at"]))
            except (ValueError, KeyError, TypeError):
                oldest_s = None
        holder = parse_lease_holder(lease)
        engine = holder.public() if holder else None
        return QueueStats(
            waiting=int(waiting),
            in_flight=int(inflight),
            dead=int(dead),
            results_pending=int(results),
            workers_alive=alive,
            workers_known=len(workers),
            oldest_waiting_s=oldest_s,
            counters={_s(a): int(b) for a, b in counters.items()},
            paused=bool(paused),
            engine=engine,
        )

    def workers(self) -> list[dict[str, str]]:
        """Heartbeats of known workers; one whose heartbeat expired has state 'gone'."""
        k = self.keys
        ids = [(_s(w), float(sc)) for w, sc in self.r.zrange(k.workers, 0, -1, withscores=True)]
        if not ids:
            return []
        with self.r.pipeline(transaction=False) as p:
            for w, _ in ids:
                p.hgetall(k.worker(w))
            beats = p.execute()
        out = []
        for (w, last), hb in zip(ids, beats, strict=True):
            row = {_s(a): _s(b) for a, b in hb.items()} if hb else {"id": w, "state": "gone"}
            row.setdefault("id", w)
            row.setdefault("seen", str(int(last * 1000)))
            out.append(row)
        return out

    def worker_logs(self, worker_id: str, last: int = 200) -> list[str]:
        return [_s(x) for x in self.r.lrange(self.keys.worker_logs(worker_id), -last, -1)]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        out = []
        for raw in self.r.lrange(self.keys.dead, 0, limit - 1):
            d = parse_dead_letter(raw)
            digest = hashlib.sha1(raw if isinstance(raw, bytes) else raw.encode()).hexdigest()
            ref = d.job_id or f"entry:{digest[:16]}"
            out.append(DeadLetter(d.job_id, d.reason, d.payload, d.at, d.worker, ref))
        return out

    def requeue_dead(self, job_ids: list[str] | None = None) -> tuple[int, list[str]]:
        """Put dead letters back at the front of the queue. Returns (requeued, refused)."""
        count, _moved, refused = self.requeue_dead_letters(job_ids)
        return count, refused

    def requeue_dead_letters(
        self, job_ids: list[str] | None = None
    ) -> tuple[int, list[str], list[str]]:
        """Like `requeue_dead`: (requeued, the job ids Redis actually moved — a letter
        already dropped is not among them —, refused refs)."""
        k = self.keys
        reply = self._run(
            "requeue_dead",
            [k.dead, k.jobs, k.events],
            ["requeue", k.wake_prefix, self.events_maxlen, *(job_ids or [])],
        )
        moved_ids = [_s(x) for x in reply[3]] if len(reply) > 3 else []
        return int(reply[0]), [m for m in moved_ids if m], [_s(x) for x in reply[2]]

    def drop_dead(self, job_ids: list[str] | None = None) -> int:
        k = self.keys
        _, dropped, *_ = self._run(
            "requeue_dead",
            [k.dead, k.jobs, k.events],
            ["drop", k.wake_prefix, self.events_maxlen, *(job_ids or [])],
        )
        return int(dropped)

    def set_paused(self, paused: bool) -> None:
        if paused:
            self.r.set(self.keys.paused, "1")
        else:
            self.r.delete(self.keys.paused)
        self.wake_engine(WakeReason.PAUSED if paused else WakeReason.RESUMED)

    def read_events(
        self, last_id: str, block_ms: int | None, count: int = 200
    ) -> list[tuple[str, str, dict]]:
        """Events after `last_id` ('$' for new ones only), blocking up to `block_ms`."""
        client = self.rb if block_ms else self.r
        reply = client.xread({self.keys.events: last_id}, count=count, block=block_ms)
        out = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                f = {_s(a): _s(b) for a, b in fields.items()}
                kind = f.get("type", "")
                out.append((_s(entry_id), kind, parse_event_data(kind, f.get("data", "{}"))))
        return out
