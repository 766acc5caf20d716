"""The job protocol on Redis.

Every multi-step change of a job's state is one Lua script (one round trip, atomic), so a
crash between two commands cannot lose a job. Every key a script touches is passed in
KEYS and every constant it needs in ARGV (see keys.py); no script reads a whole list or
the backlog, so taking a job or the engine's tick costs the same with 10 or 100,000 jobs
waiting.

- waiting: id in the zset `…:waiting` (scored by enqueue time) and one entry per waiting
  job on the list `JOB_QUEUE` itself, so `LLEN storyworld:gpu:jobs` is the number of jobs
  waiting, as the deployment guide says (pushed on arrival, popped whichever job leaves:
  O(1) and exact in length; the zset says which jobs they are); payload in `…:data`; id on
  the wake list of its backend (and GPU memory class). A busy worker takes the next job
  inside the script that reports the previous one (BullMQ's moveToFinished); an idle one
  blocks (BLMPOP) on its wake lists and claims the id it got. A cancelled job leaves the
  zset, the count list and the data hash; its wake entry is skipped when popped.
- in flight: members `job_id|worker` of `…:inflight` scored by lease deadline (server
  clock). Workers renew leases with their heartbeat while they hold a job; the engine's
  tick hands out again jobs whose lease ran out (the payload's `delivery` counts up), or
  dead-letters them after `MAX_DELIVERIES`.
- results: the stream `RESULT_QUEUE`, read by the engine through the consumer group
  `engine` in batches; acknowledged (XACK + XDEL) in batches once applied, so a crash
  between reading and applying loses nothing (the tick's `recover` reads them again).
- events: a capped stream consoles block on, fed from inside the scripts.
"""

from __future__ import annotations

import collections
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
    WakeReason,
    WorkerGoneEvent,
    event_fields,
    parse_dead_letter,
    parse_event_data,
    parse_job,
    parse_lease_holder,
    wake_message,
)
from storyworld.protocol import limits as L
from storyworld.queue.keys import (
    DEFAULT_BACKENDS,
    RESULTS_GROUP,
    Keys,
    suffixes_of,
    vram_classes_arg,
    wake_suffix,
)

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
    "ack_results",
    "dead_letter",
    "tick",
    "requeue_dead",
    "cancel",
    "release",
)

#: A dead letter keeps at most this much of the payload (an oversized job's head).
LETTER_PAYLOAD_LIMIT = L.MAX_JOB_BYTES
#: Results acknowledged per tick at most; more are acknowledged by a script of their own.
ACK_BATCH = 1000
#: Expired leases handled per tick (the rest at the next one, which follows at once).
RECLAIM_BATCH = 100
#: While results flow, the engine reads them at most this often (a batch per read; a result
#: is applied at most this much later, the dispatch of jobs is not delayed).
RESULT_GATHER_S = 0.25
#: Jobs in flight listed per tick (the engine moves them from queued to rendering).
INFLIGHT_LISTED = 1000


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


def _stream_entries(reply: Any) -> list[tuple[str, str]]:
    """(entry id, field `r`) of an XREADGROUP reply, RESP2 or RESP3."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else [s[1] for s in reply]
    out = []
    for entries in streams:
        for entry in entries:
            entry_id, fields = entry[0], entry[1]
            raw = ""
            if fields:
                raw = _s(fields.get(b"r", fields.get("r")))
            out.append((_s(entry_id), raw))
    return out


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
    #: How an operator names this entry: its job id (the key of the dead-letter hash).
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
    """All Redis operations of engine, workers and operators, by name. Works with a plain
    client and with a `redis.cluster.RedisCluster` (hash-tagged `JOB_QUEUE`)."""

    def __init__(
        self,
        fast: Any,
        blocking: Any | None = None,
        keys: Keys | None = None,
        *,
        lease_s: float = 30.0,
        heartbeat_ttl_s: float = 330.0,
        max_deliveries: int = 3,
        events_maxlen: int = 2000,
        engine_lease_s: float = 360.0,
        reclaim_interval_s: float = 5.0,
        repair_age_s: float = 60.0,
        repair_interval_s: float = 300.0,
        result_batch: int = 500,
    ) -> None:
        self.r = fast
        self.rb = blocking or fast
        self.keys = keys or Keys()
        self.lease_ms = int(lease_s * 1000)
        self.hb_ttl = int(heartbeat_ttl_s)
        self.max_deliveries = max_deliveries
        self.events_maxlen = events_maxlen
        self.engine_lease_ms = int(engine_lease_s * 1000)
        self.reclaim_interval_s = reclaim_interval_s
        self.repair_age_ms = int(repair_age_s * 1000)
        self.repair_interval_s = repair_interval_s
        self.result_batch = result_batch
        self._scripts = {name: fast.register_script(src) for name, src in _SOURCES.items()}
        # Engine side: wake suffixes the tick can route to (grows with what it enqueues),
        # results read but not yet applied (raw -> stream ids), ids to acknowledge.
        self._suffixes: list[str] = suffixes_of(DEFAULT_BACKENDS)
        self._unacked: dict[str, list[str]] = collections.defaultdict(list)
        self._acks: list[str] = []
        self._buffer: collections.deque[str] = collections.deque()
        self._last_reclaim = float("-inf")
        self._last_repair = float("-inf")
        self._last_read = float("-inf")
        self._last_count = 0

    @classmethod
    def from_settings(cls, settings: Any, fast: Any, blocking: Any | None = None) -> JobQueue:
        return cls(
            fast,
            blocking,
            Keys.from_settings(settings),
            lease_s=settings.lease_s,
            heartbeat_ttl_s=settings.heartbeat_ttl_s,
            max_deliveries=settings.max_deliveries,
            events_maxlen=settings.events_maxlen,
            engine_lease_s=settings.engine_lease_s,
            reclaim_interval_s=settings.reclaim_interval_s,
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
        at once: a busy one blocks on the handover list, an idle one on the result stream."""
        script = (
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('DEL', KEYS[1]) end return 0"
        )
        if self.r.eval(script, 1, self.keys.engine_lease, token):
            self._nudge_standbys(WakeReason.HANDOVER)

    def _nudge_standbys(self, reason: str) -> None:
        with self.r.pipeline(transaction=False) as p:
            p.lpush(self.keys.engine_handover, "1")
            p.expire(self.keys.engine_handover, 60)
            p.xadd(self.keys.results, {"r": wake_message(reason)})
            p.execute()

    def wake_standbys(self) -> None:
        """Unblock engines standing by (one stopping in this process, say); each looks at
        the lease again, nothing else changes."""
        self._nudge_standbys(WakeReason.STOPPING)

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
        """An idle standby blocks on the result stream like the leader, reading without a
        group (so the leader still gets everything). True if something arrived."""
        k = self.keys
        reply = self.rb.xread({k.results: "$"}, count=1, block=max(10, int(timeout_s * 1000)))
        return bool(reply)

    def wait_for_handover(self, timeout_s: float) -> bool:
        """A busy standby blocks until the lease should have run out, or a clean handover."""
        return self.rb.blpop([self.keys.engine_handover], max(timeout_s, 0.01)) is not None

    def engine_holder(self) -> dict[str, Any] | None:
        holder = parse_lease_holder(self.r.get(self.keys.engine_lease))
        return holder.public() if holder else None

    def _know_suffix(self, suffix: str) -> None:
        if suffix not in self._suffixes:
            self._suffixes.append(suffix)

    def enqueue(self, jobs: list[Job], token: str = "") -> int:
        """Queue jobs in one round trip. Returns -1 if `token` no longer holds the engine
        lease (another engine took over): then nothing was queued."""
        if not jobs:
            return 0
        k = self.keys
        wakes: list[str] = []
        triples: list[Any] = []
        for job in jobs:
            suffix = wake_suffix(job.backend, job.min_vram_gb)
            self._know_suffix(suffix)
            key = k.wake(suffix)
            if key not in wakes:
                wakes.append(key)
            triples += [job.job_id, job.to_json(), wakes.index(key) + 1]
        args = [token, self.events_maxlen, EventKind.ENQUEUED, len(jobs), *triples]
        return int(
            self._run(
                "enqueue", [k.engine_lease, k.waiting, k.data, k.events, k.jobs, *wakes], args
            )
        )

    def tick(
        self,
        token: str,
        *,
        max_results: int = 100,
        repair: bool = False,
        recover: bool = False,
        lease_ms: int | None = None,
    ) -> TickResult:
        """The engine's periodic script (see tick.lua): renew, then reclaim (at most every
        `reclaim_interval_s`), sweep (`repair`, at most every `repair_interval_s`), collect.
        Results returned before, and passed back to `ack_and_wait` as applied, are
        acknowledged; with `recover` the unacknowledged ones are returned again."""
        k = self.keys
        now = time.monotonic()
        parts = ""
        if recover or now - self._last_reclaim >= self.reclaim_interval_s:
            parts += "r"
            self._last_reclaim = now
        if repair and now - self._last_repair >= self.repair_interval_s:
            parts += "s"
            self._last_repair = now
        if recover:
            parts += "g"
            self._buffer.clear()
            self._unacked.clear()
        # Results the last blocking read brought and not yet handed out come first.
        buffered = list(self._buffer)
        self._buffer.clear()
        acks, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
        reply = self._run(
            "tick",
            [
                k.engine_lease,
                k.inflight,
                k.data,
                k.waiting,
                k.dead,
                k.dead_new,
                k.events,
                k.stats,
                k.results,
                k.paused,
                k.workers,
                k.jobs,
                *[k.wake(s) for s in self._suffixes],
            ],
            [
                token,
                lease_ms or self.engine_lease_ms,
                parts,
                self.max_deliveries,
                self.events_maxlen,
                max(1, max_results - len(buffered)),
                vram_classes_arg(),
                RECLAIM_BATCH,
                self.repair_age_ms,
                EventKind.REQUEUED,
                EventKind.DEAD,
                RESULTS_GROUP,
                INFLIGHT_LISTED,
                LETTER_PAYLOAD_LIMIT,
                *_counted(self._suffixes),
                *_counted(acks),
            ],
        )
        if int(reply[0]) != 1:
            self._acks = acks + self._acks
            self._buffer.extend(buffered)
            return TickResult(leader=False)
        in_flight = {}
        for member in reply[1]:
            job_id, _, worker = _s(member).partition("|")
            in_flight[job_id] = worker
        results = buffered + self._delivered(
            [(_s(reply[4][i]), _s(reply[4][i + 1])) for i in range(0, len(reply[4]), 2)]
        )
        for suffix in reply[7]:
            self._know_suffix(_s(suffix))
        if reply[7] or len(reply[2]) >= RECLAIM_BATCH:
            self._last_reclaim = float("-inf")  # more to reclaim: at the next tick
        return TickResult(
            leader=True,
            in_flight=in_flight,
            reclaimed=[_s(x) for x in reply[2]],
            dead=_pairs(reply[3]),
            results=results,
            paused=bool(int(reply[5])),
            repaired=int(reply[6]),
        )

    def _delivered(self, entries: list[tuple[str, str]]) -> list[str]:
        out = []
        for entry_id, raw in entries:
            self._unacked[raw].append(entry_id)
            out.append(raw)
        return out

    def _applied(self, applied: list[str]) -> None:
        for raw in applied:
            ids = self._unacked.get(raw)
            if ids:
                self._acks.append(ids.pop(0))
                if not ids:
                    del self._unacked[raw]

    def ack_and_wait(self, applied: list[str], timeout_s: float) -> str | None:
        """Note applied results (acknowledged with the next tick, in batches) and return the
        next result or wake nudge, blocking up to `timeout_s`. Results come in batches: one
        blocking read brings everything waiting, and the next calls return from it without
        a round trip."""
        self._applied(applied)
        if self._buffer:
            return self._buffer.popleft()
        k = self.keys
        if len(self._acks) >= ACK_BATCH:
            self.ack_results()
        # While results flow, let a few gather before the next read (at most RESULT_GATHER_S
        # later): one read then brings a batch, not one result per command.
        since = time.monotonic() - self._last_read
        if self._last_count and since < RESULT_GATHER_S and timeout_s > RESULT_GATHER_S:
            time.sleep(RESULT_GATHER_S - since)
        block_ms = max(10, int(timeout_s * 1000))
        try:
            reply = self.rb.xreadgroup(
                RESULTS_GROUP,
                RESULTS_GROUP,
                {k.results: ">"},
                count=self.result_batch,
                block=block_ms,
            )
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self._create_group()
            return None
        self._buffer.extend(self._delivered(_stream_entries(reply)))
        self._last_read, self._last_count = time.monotonic(), len(self._buffer)
        return self._buffer.popleft() if self._buffer else None

    def buffered(self) -> int:
        """Results the last read brought that `ack_and_wait` has not returned yet."""
        return len(self._buffer)

    def ack_results(self) -> None:
        """Acknowledge the applied results now (normally the tick does it)."""
        while self._acks:
            batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
            self._run("ack_results", [self.keys.results], [RESULTS_GROUP, *batch])

    def _create_group(self) -> None:
        try:
            self.r.xgroup_create(self.keys.results, RESULTS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def wake_engine(self, reason: str) -> None:
        """Make a blocked engine look at the database now (new episode, retry, pause)."""
        self.r.xadd(self.keys.results, {"r": wake_message(reason)})

    def cancel_jobs(self, job_ids: list[str]) -> int:
        """Withdraw waiting jobs and ask holders of in-flight ones to stop."""
        if not job_ids:
            return 0
        k = self.keys
        wakes: list[str] = []
        pairs: list[Any] = []
        for job_id, raw in zip(job_ids, self.r.hmget(k.data, list(job_ids)), strict=True):
            index = 0
            if raw:
                try:
                    job = json.loads(raw)
                    key = k.wake_of(str(job["backend"]), float(job.get("min_vram_gb") or 0))
                    if key not in wakes:
                        wakes.append(key)
                    index = wakes.index(key) + 1
                except (ValueError, KeyError, TypeError, AttributeError):
                    index = 0
            pairs += [job_id, index]
        return int(
            self._run(
                "cancel", [k.waiting, k.data, k.cancelled, k.jobs, *wakes], [len(job_ids), *pairs]
            )
        )

    def known_job_ids(self) -> set[str]:
        """Ids of the jobs Redis knows: waiting, in flight, or with a result not yet applied.
        For the engine's reconciliation at start-up and after an outage."""
        k = self.keys
        with self.r.pipeline(transaction=False) as p:
            p.hkeys(k.data)
            p.zrange(k.inflight, 0, -1)
            p.xrange(k.results, "-", "+")
            data, inflight, results = p.execute()
        ids = {_s(x) for x in data} | {_s(x).partition("|")[0] for x in inflight}
        for _entry_id, fields in results:
            try:
                ids.add(json.loads(fields.get(b"r", fields.get("r", b"")))["job_id"])
            except (ValueError, KeyError, TypeError):
                continue
        return ids

    def inject(self, job_id: str, payload: str, suffix: str) -> None:
        """Put a raw message on the queue as a waiting job, as an old or foreign producer
        would (for tools and tests; the engine uses `enqueue`)."""
        k = self.keys
        with self.r.pipeline(transaction=False) as p:
            p.hset(k.data, job_id, payload)
            p.zadd(k.waiting, {job_id: int(time.time() * 1000)})
            p.lpush(k.jobs, job_id)
            p.lpush(k.wake(suffix), job_id)
            p.execute()

    def results_pending(self) -> int:
        """Results (and nudges) on the stream the engine has not read yet: the consumer
        group's lag (read but unacknowledged ones wait only for the next tick's batch
        acknowledgement and are not counted)."""
        try:
            groups = self.r.xinfo_groups(self.keys.results)
        except redis.ResponseError:
            return 0  # no stream yet
        for g in groups:
            if _s(g.get("name")) == RESULTS_GROUP:
                lag = g.get("lag")
                return int(lag) if lag is not None else int(self.r.xlen(self.keys.results))
        return int(self.r.xlen(self.keys.results))

    def waiting(self) -> int:
        """Jobs waiting for a worker."""
        return int(self.r.llen(self.keys.jobs))

    # ---------------------------------------------------------------- worker side
    def wait_for_work(
        self, backends: list[str], timeout_s: float, vram_gb: float = 0.0
    ) -> tuple[str, str] | None:
        """Block until a job this worker can run (backend, GPU memory) is waiting. Returns
        (wake list suffix, job id) popped from its wake list (then `reserve` it), or None
        on timeout."""
        keys = self.keys.wake_lists(backends, vram_gb)
        reply = self.rb.execute_command("BLMPOP", max(timeout_s, 0.01), len(keys), *keys, "RIGHT")
        if not reply:
            return None
        key, values = _s(reply[0]), reply[1]
        return key[len(self.keys.wake_prefix) :], _s(values[0])

    def return_payload(self, suffix: str, job_id: str) -> None:
        """Put back an id taken from a wake list just before deciding to stop."""
        self.r.rpush(self.keys.wake(suffix), job_id)

    def reserve(
        self, worker_id: str, job_id: str, backends: list[str], vram_gb: float = 0.0
    ) -> tuple[str, str] | None:
        """Claim the job `job_id` just popped from a wake list (or, if it no longer waits or
        `job_id` is '', the next one waiting for this worker). Returns (job id, payload)."""
        k = self.keys
        reply = self._run(
            "reserve",
            [k.waiting, k.data, k.inflight, k.events, k.jobs, *k.wake_lists(backends, vram_gb)],
            [worker_id, self.lease_ms, self.events_maxlen, EventKind.STARTED, job_id],
        )
        return (_s(reply[0]), _s(reply[1])) if reply else None

    def take(
        self, worker_id: str, backends: list[str], timeout_s: float = 0.01, vram_gb: float = 0.0
    ) -> Reservation | None:
        """Wait for and claim one job (parsing it); for tools and tests. Unreadable
        payloads are dead-lettered."""
        got = self.wait_for_work(backends, timeout_s, vram_gb)
        if got is None:
            return None
        claimed = self.reserve(worker_id, got[1], backends, vram_gb)
        if claimed is None:
            return None
        return self.parse_claimed(worker_id, *claimed)

    def parse_claimed(self, worker_id: str, job_id: str, raw: str) -> Reservation | None:
        """The job of a claimed payload; dead-letters it (None) if it cannot be read."""
        try:
            job = parse_job(raw)
        except ProtocolError as e:
            self.dead_letter(raw, job_id, worker_id, str(e))
            return None
        return Reservation(raw=raw, job=job)

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
                EventKind.HEARTBEAT,
                *_counted(job_ids),
                *_counted(_flatten(fields)),
                *_counted(logs or []),
            ],
        )
        return HeartbeatReply(lost=[_s(x) for x in reply[0]], cancelled=[_s(x) for x in reply[1]])

    def ack(
        self,
        worker_id: str,
        result: Result,
        *,
        was_cancelled: bool = False,
        take_next: list[str] | None = None,
        vram_gb: float = 0.0,
    ) -> tuple[str, str] | None:
        """Report a job's result and release its lease; with `take_next` (the worker's
        backends) also claim the next job waiting for it, in the same round trip. Returns
        (job id, payload) of that job."""
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
        wakes = k.wake_lists(take_next, vram_gb) if take_next else []
        reply = self._run(
            "ack",
            [k.inflight, k.data, k.results, k.events, k.cancelled, k.waiting, k.jobs, *wakes],
            [
                worker_id,
                result.job_id,
                result.to_json(),
                self.events_maxlen,
                event.to_json(),
                "1" if was_cancelled else "0",
                EventKind.DONE if result.status == "succeeded" else EventKind.FAILED,
                EventKind.STARTED,
                self.lease_ms,
                "1" if take_next else "0",
            ],
        )
        return (_s(reply[0]), _s(reply[1])) if reply else None

    def release(self, job_id: str, worker_id: str, backend: str, min_vram_gb: float = 0.0) -> bool:
        """Hand a held job back to the front of its wake list (worker shutting down)."""
        k = self.keys
        return bool(
            self._run(
                "release",
                [k.inflight, k.data, k.waiting, k.events, k.wake_of(backend, min_vram_gb), k.jobs],
                [
                    job_id,
                    worker_id,
                    self.events_maxlen,
                    EventKind.REQUEUED,
                    "handed back by a worker shutting down",
                ],
            )
        )

    def dead_letter(self, payload: str, job_id: str, worker_id: str, reason: str) -> None:
        """Dead-letter a claimed job that can never run (unreadable, over a limit). The
        letter keeps the stored payload (or `payload` if none is stored), cut to a limit."""
        k = self.keys
        self._run(
            "dead_letter",
            [k.inflight, k.data, k.waiting, k.dead, k.dead_new, k.events, k.stats, k.jobs],
            [
                job_id,
                reason,
                worker_id,
                self.events_maxlen,
                EventKind.DEAD,
                LETTER_PAYLOAD_LIMIT,
                payload[:LETTER_PAYLOAD_LIMIT],
            ],
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
            p.hlen(k.dead)
            p.xlen(k.results)
            p.zrange(k.workers, 0, -1)
            p.zrange(k.waiting, 0, 0, withscores=True)
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
            oldest_s = max(0.0, time.time() - float(oldest[0][1]) / 1000)
        holder = parse_lease_holder(lease)
        engine = holder.public() if holder else None
        if results:
            results = self.results_pending()
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
        """The newest dead letters first."""
        out = []
        for ref, raw in self.r.hgetall(self.keys.dead).items():
            d = parse_dead_letter(raw)
            out.append(DeadLetter(d.job_id, d.reason, d.payload, d.at, d.worker, _s(ref)))
        out.sort(key=lambda d: d.at, reverse=True)
        return out[:limit]

    def _dead_selection(self, refs: list[str] | None) -> tuple[list[str], list[Any]]:
        """Wake keys and (name, job id, wake index) triples of the selected letters (by
        name: job id or `entry:<sha>`; all if `refs` is empty)."""
        k = self.keys
        letters = self.r.hgetall(k.dead)
        wakes: list[str] = []
        triples: list[Any] = []
        for raw_ref, raw in letters.items():
            ref = _s(raw_ref)
            if refs and ref not in refs:
                continue
            job_id, index = "", 0
            try:
                job = json.loads(parse_dead_letter(raw).payload)
                key = k.wake_of(str(job["backend"]), float(job.get("min_vram_gb") or 0))
                job_id = str(job["job_id"])
                if key not in wakes:
                    wakes.append(key)
                index = wakes.index(key) + 1
            except (ValueError, KeyError, TypeError, AttributeError):
                index = 0
            triples += [ref, job_id, index]
        return wakes, triples

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
        wakes, triples = self._dead_selection(job_ids)
        if not triples:
            return 0, [], []
        reply = self._run(
            "requeue_dead",
            [k.dead, k.waiting, k.data, k.events, k.jobs, *wakes],
            ["requeue", self.events_maxlen, EventKind.DEAD_CHANGED, len(triples) // 3, *triples],
        )
        moved_ids = [_s(x) for x in reply[3]] if len(reply) > 3 else []
        return int(reply[0]), [m for m in moved_ids if m], [_s(x) for x in reply[2]]

    def drop_dead(self, job_ids: list[str] | None = None) -> int:
        k = self.keys
        _, triples = self._dead_selection(job_ids)
        if not triples:
            return 0
        _, dropped, *_ = self._run(
            "requeue_dead",
            [k.dead, k.waiting, k.data, k.events, k.jobs],
            ["drop", self.events_maxlen, EventKind.DEAD_CHANGED, len(triples) // 3, *triples],
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
                data = parse_event_data(kind, f.get("data", "{}"))
                nxt = data.pop("next", None)
                out.append((_s(entry_id), kind, data))
                if isinstance(nxt, dict):
                    # The job a worker took along with reporting this one (ack.lua): its
                    # started event, under the same entry id.
                    out.append((_s(entry_id), EventKind.STARTED.value, nxt))
        return out
