"""Redis: reachable, TLS, password, server kind and commands, eviction, queues, clock,
round-trip time and the projected daily commands against REDIS_DAILY_BUDGET."""

from __future__ import annotations

import statistics
import time
from typing import Any
from urllib.parse import urlsplit

import redis

from storyworld.config import Settings
from storyworld.doctor.report import Check, Status
from storyworld.queue import Keys
from storyworld.queue.connection import _client

__all__ = ["check_redis", "projected_daily_commands"]

#: Client-sent commands per rendered job, measured (BENCHMARKS.md: 5.28).
COMMANDS_PER_JOB = 5.3
SLOW_RTT_MS = 250.0
CLOCK_SKEW_WARN_S = 2.0


def projected_daily_commands(settings: Settings, workers: int, engines: int = 1) -> int:
    """Client-sent commands a day by an idle fleet: a worker sends one heartbeat and one
    BLMPOP per WORKER_IDLE_BLOCK_SECONDS, an engine one tick and one BLMOVE per
    ENGINE_IDLE_BLOCK_SECONDS (BENCHMARKS.md explains and measures both)."""
    day = 86400.0
    worker = 2 * day / max(settings.worker_idle_block_s, 0.1)
    engine = 2 * day / max(settings.engine_idle_block_s, 0.1)
    return round(workers * worker + engines * engine)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _where(url: str) -> str:
    """host:port and database, for display: never the URL itself (the whole REDIS_URL is
    a secret, and `redact` hides every copy of it)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix socket {parts.path}"
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname}:{parts.port or 6379} (db {db}, {parts.scheme})"


def _connection_failure(e: BaseException, where: str, scheme: str) -> list[Check]:
    text = str(e).split("\n")[0]
    low = text.lower()
    if "noauth" in low or "authentication required" in low or "already authenticated" in low:
        return [
            Check("redis.reachable", Status.OK, f"Redis at {where} answers"),
            Check(
                "redis.auth",
                Status.FAIL,
                f"Redis at {where} needs a password and none was given",
                fix="put the password in REDIS_URL: redis[s]://default:PASSWORD@host:port",
            ),
        ]
    if isinstance(e, redis.AuthenticationError) or "wrongpass" in low or "invalid password" in low:
        return [
            Check("redis.reachable", Status.OK, f"Redis at {where} answers"),
            Check(
                "redis.auth",
                Status.FAIL,
                f"Redis at {where} refused the user name or password",
                fix="copy the password again into REDIS_URL (redis[s]://default:PASSWORD@host:port);"
                " on Upstash it is the database's token",
            ),
        ]
    if "certificate" in low or "ssl" in low or "tls" in low or "handshake" in low:
        return [
            Check("redis.reachable", Status.OK, f"something listens at {where}"),
            Check(
                "redis.tls",
                Status.FAIL,
                f"TLS to {where} failed: {text}",
                fix="if the server uses a private CA, set REDIS_CA_CERT to its PEM file; make "
                "sure the host name in REDIS_URL is the one on the certificate; use redis:// "
                "only for a server without TLS"
                if scheme == "rediss"
                else "the server speaks TLS: write REDIS_URL as rediss://…",
            ),
        ]
    return [
        Check(
            "redis.reachable",
            Status.FAIL,
            f"nothing answers at {where} ({text})",
            fix="check the host and port in REDIS_URL (copy it again from the provider's "
            "console), that the server runs, and that no firewall blocks the port",
        )
    ]


def check_redis(settings: Settings, role: str) -> tuple[list[Check], redis.Redis | None]:
    """Every Redis check; also returns the client for later checks (None on failure)."""
    url = settings.redis_url.get()
    if not url:
        home = settings.home
        return [
            Check(
                "redis.local_default",
                Status.OK,
                f"no REDIS_URL: the local default (embedded server in {home}) is used",
                data={"local_default": True},
            )
        ], None
    where = _where(url)
    scheme = urlsplit(url).scheme.replace("valkey", "redis")
    try:
        r = _client(url, 5.0, settings, "storyworld-doctor", retries=0)
        r.ping()
    except (redis.RedisError, OSError) as e:
        return _connection_failure(e, where, scheme), None
    out = [Check("redis.reachable", Status.OK, f"Redis at {where} answers")]
    if scheme == "rediss":
        out.append(Check("redis.tls", Status.OK, "TLS with a verified certificate"))
    elif urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1", None):
        out.append(
            Check(
                "redis.tls",
                Status.WARN,
                "REDIS_URL is redis:// (no TLS) to a remote host",
                fix="use rediss:// (hosted Redis such as Upstash offers TLS)",
            )
        )
    out.append(Check("redis.auth", Status.OK, "authentication accepted"))
    try:
        out += _server_checks(r, settings, role)
    except redis.RedisError as e:
        out.append(
            Check(
                "redis.commands",
                Status.FAIL,
                f"a command failed: {type(e).__name__}: {e}",
                fix="check the server's ACL allows the user every command (EVALSHA, BLMPOP, ...)",
            )
        )
    return out, r


def _server_checks(r: redis.Redis, settings: Settings, role: str) -> list[Check]:
    out = []
    info: dict[str, Any] = {}
    try:
        info = r.info("server") or {}
    except redis.ResponseError:
        pass
    kind, version = "redis", str(info.get("redis_version", "unknown"))
    if "valkey_version" in info or info.get("server_name") == "valkey":
        kind, version = "valkey", str(info.get("valkey_version", version))
    elif "dragonfly_version" in info:
        kind, version = "dragonfly", str(info["dragonfly_version"])
    keys = Keys.from_settings(settings)
    probe = f"{keys.base}:doctor:probe"
    missing = []
    for cmd in (
        ("LMPOP", 1, probe, "RIGHT"),
        ("BLMPOP", 0.01, 1, probe, "RIGHT"),
        ("BLMOVE", probe, probe, "RIGHT", "LEFT", 0.01),
    ):
        try:
            r.execute_command(*cmd)
        except redis.ResponseError as e:
            if "unknown command" in str(e).lower() or "err" in str(e).lower()[:4]:
                missing.append(str(cmd[0]))
    data = {"kind": kind, "version": version}
    if missing:
        out.append(
            Check(
                "redis.server",
                Status.FAIL,
                f"{kind} {version} lacks {', '.join(missing)} (the blocking pops need Redis >= 7 "
                "or Valkey)",
                fix="upgrade to Redis 7 or later, or use Valkey",
                data=data,
            )
        )
    else:
        out.append(
            Check(
                "redis.server",
                Status.OK,
                f"{kind} {version}: every command StoryWorld uses (BLMPOP, LMPOP, BLMOVE, scripts)",
                data=data,
            )
        )
    out.append(_eviction(r))
    out += _queues(r, settings, keys)
    out += _timing(r)
    out.append(_budget(r, settings, keys, role))
    return out


def _eviction(r: redis.Redis) -> Check:
    policy = ""
    try:
        policy = str((r.info("memory") or {}).get("maxmemory_policy", ""))
    except redis.ResponseError:
        pass
    if not policy:
        try:
            policy = str((r.config_get("maxmemory-policy") or {}).get("maxmemory-policy", ""))
        except redis.ResponseError:
            policy = ""
    if policy == "noeviction":
        return Check(
            "redis.eviction",
            Status.OK,
            "maxmemory-policy noeviction: queue keys are never evicted",
            data={"policy": policy},
        )
    if not policy:
        return Check(
            "redis.eviction",
            Status.WARN,
            "could not read maxmemory-policy",
            fix="make sure the server's eviction policy is noeviction (the provider's console)",
            data={"policy": None},
        )
    return Check(
        "redis.eviction",
        Status.WARN,
        f"maxmemory-policy {policy}: under memory pressure Redis may evict queue keys, "
        "losing jobs and results",
        fix="set it to noeviction (CONFIG SET maxmemory-policy noeviction, redis.conf, or "
        "the provider's console)",
        data={"policy": policy},
    )


def _queues(r: redis.Redis, settings: Settings, keys: Keys) -> list[Check]:
    with r.pipeline(transaction=False) as p:
        p.type(keys.jobs)
        p.type(keys.results)
        p.llen(keys.jobs)
        p.xlen(keys.results)
        p.zcard(keys.inflight)
        p.hlen(keys.dead)
        p.zrange(keys.workers, 0, -1)
        jt, rt, waiting, results, inflight, dead, workers = p.execute()
    out = []
    for name, key, t, want in (
        ("JOB_QUEUE", keys.jobs, jt, "list"),
        ("RESULT_QUEUE", keys.results, rt, "stream"),
    ):
        if _s(t) not in (want, "none"):
            out.append(
                Check(
                    "redis.queues",
                    Status.FAIL,
                    f"{name} {key!r} is a {_s(t)}, not a {want}",
                    fix=f"point {name} at another name: this key belongs to something else",
                )
            )
    live = 0
    if workers:
        with r.pipeline(transaction=False) as p:
            for w in workers:
                p.exists(keys.worker(_s(w)))
            live = sum(int(x) for x in p.execute())
    data = {
        "job_queue": keys.jobs,
        "result_queue": keys.results,
        "waiting": int(waiting),
        "results_pending": int(results),
        "in_flight": int(inflight),
        "dead": int(dead),
        "workers": live,
    }
    summary = (
        f"{keys.jobs}: {waiting} waiting, {inflight} in flight, {dead} dead; "
        f"{keys.results}: {results} pending; {live} live worker(s) on these queues"
    )
    if int(waiting) and not live:
        out.append(
            Check(
                "redis.queues",
                Status.WARN,
                summary + " — jobs wait and no worker listens",
                fix="start a worker, or check that the workers' JOB_QUEUE and RESULT_QUEUE match "
                "these names exactly",
                data=data,
            )
        )
    elif not out:
        out.append(Check("redis.queues", Status.OK, summary, data=data))
    return out


def _timing(r: redis.Redis) -> list[Check]:
    rtts = []
    skew = 0.0
    for _ in range(5):
        t0 = time.time()
        sec, usec = r.time()
        t1 = time.time()
        rtts.append((t1 - t0) * 1000)
        skew = float(sec) + float(usec) / 1e6 - (t0 + t1) / 2
    rtt = statistics.median(rtts)
    out = [
        Check(
            "redis.rtt",
            Status.OK if rtt < SLOW_RTT_MS else Status.WARN,
            f"round trip {rtt:.1f} ms (median of 5)",
            fix="run the engine and workers near the Redis region",
            data={"rtt_ms": rtt},
        ),
    ]
    if abs(skew) > CLOCK_SKEW_WARN_S:
        out.append(
            Check(
                "redis.clock",
                Status.WARN,
                f"this clock differs from the server's by {skew:+.1f} s",
                fix="turn on time sync (NTP / systemd-timesyncd); leases use the server's clock, "
                "but ages shown in the console and stats use this one",
                data={"skew_s": skew},
            )
        )
    else:
        out.append(
            Check(
                "redis.clock",
                Status.OK,
                f"clock within {abs(skew):.2f} s of the server's",
                data={"skew_s": skew},
            )
        )
    return out


def _budget(r: redis.Redis, settings: Settings, keys: Keys, role: str) -> Check:
    budget = settings.redis_daily_budget
    known = int(r.zcard(keys.workers))
    workers = max(known, 1)
    idle = projected_daily_commands(settings, workers)
    room = (budget - idle) / COMMANDS_PER_JOB if budget else 0
    data = {
        "budget": budget,
        "idle_per_day": idle,
        "workers_assumed": workers,
        "per_job": COMMANDS_PER_JOB,
        "jobs_per_day_within_budget": max(0, int(room)),
    }
    text = (
        f"an idle engine and {workers} worker(s) send about {idle} commands a day at "
        f"these intervals, plus ~{COMMANDS_PER_JOB:g} per job"
    )
    if not budget:
        return Check("redis.budget", Status.OK, text + " (no REDIS_DAILY_BUDGET)", data=data)
    if idle > budget:
        return Check(
            "redis.budget",
            Status.WARN,
            f"{text}: over REDIS_DAILY_BUDGET {budget}",
            fix="raise WORKER_IDLE_BLOCK_SECONDS / ENGINE_IDLE_BLOCK_SECONDS, run fewer idle "
            "workers (--idle-exit), or a bigger plan",
            data=data,
        )
    return Check(
        "redis.budget",
        Status.OK,
        f"{text}: room for about {int(room)} jobs a day in REDIS_DAILY_BUDGET {budget}",
        data=data,
    )
