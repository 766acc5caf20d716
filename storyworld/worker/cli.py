"""`storyworld-worker`: the headless worker operators run on GPU pods."""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
import threading

from storyworld.config import ConfigError, Settings, load_settings, redact
from storyworld.queue import JobQueue, connect, describe_redis_error
from storyworld.storage import StorageError, open_store
from storyworld.worker.backends import KNOWN_BACKENDS, available_backends, backend_class
from storyworld.worker.backends.base import RenderBackend
from storyworld.worker.gpu import gpu_status
from storyworld.worker.loop import LogBuffer, Worker

__all__ = ["build_parser", "main"]

log = logging.getLogger("storyworld.worker")


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="storyworld-worker",
        description="Take render jobs from Redis, render, upload, report. Settings come from "
        "the environment and .env (REDIS_URL, S3_*, ...); options override them.",
    )
    p.add_argument(
        "--backends",
        help="comma-separated backends to offer (default: every "
        f"backend that can run here, of {', '.join(KNOWN_BACKENDS)})",
    )
    p.add_argument("--concurrency", type=int, help="jobs rendered at once (default 1)")
    p.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="exit after this long without work (0: never), so a pod stops billing",
    )
    p.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    p.add_argument("--log-file", help="also log to this file, rotated (e.g. worker.log)")
    p.add_argument("--job-queue", help="Redis list of waiting jobs (JOB_QUEUE)")
    p.add_argument("--result-queue", help="Redis list for results (RESULT_QUEUE)")
    p.add_argument("--worker-id", help="name shown in the console (default host-pid-xxxx)")
    p.add_argument("--warm-up", action="store_true", help="load models before taking jobs")
    p.add_argument(
        "--healthcheck",
        action="store_true",
        help="exit 0 if this machine's worker sent a heartbeat within HEARTBEAT_TTL_SECONDS "
        "(reads WORKER_HEALTH_DIR; for a container HEALTHCHECK), else 1",
    )
    p.add_argument("--env-file", default=".env", help="settings file (default .env)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def setup_logging(log_file: str | None, verbose: bool, buffer: LogBuffer | None) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    fmt = _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if log_file:
        fh = logging.handlers.RotatingFileHandler(log_file, maxBytes=10 << 20, backupCount=5)
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if buffer is not None:
        logging.getLogger("storyworld").addHandler(buffer)
    for noisy in ("botocore", "urllib3", "httpx", "httpcore", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def choose_backends(settings: Settings, wanted: list[str] | None) -> dict[str, RenderBackend]:
    """Instantiate the backends that can run here; refuse explicitly requested ones that
    cannot, with the reason."""
    status = available_backends(settings, wanted)
    if wanted:
        missing = {n: why for n, why in status.items() if why}
        if missing:
            raise ConfigError(
                "; ".join(f"backend {n} cannot run here: {why}" for n, why in missing.items())
            )
    chosen = {}
    has_gpu = gpu_status() is not None
    for name, why in status.items():
        if why:
            log.info("backend %s not offered: %s", name, why)
            continue
        cls = backend_class(name)
        if cls.by_name_only and not wanted:
            continue
        if cls.needs_gpu and not has_gpu and not wanted:
            # It would run, slowly, on the CPU: offer it only when asked for by name.
            log.info("backend %s not offered: no GPU here (ask with --backends %s)", name, name)
            continue
        chosen[name] = cls(settings)
    if not chosen:
        raise ConfigError("no backend can run on this machine")
    return chosen


def healthcheck(settings: Settings) -> int:
    """The worker's own heartbeat, read from local disk (no Redis command)."""
    from storyworld.worker.health import check_health

    if not settings.worker_health_dir:
        print("unhealthy: WORKER_HEALTH_DIR is not set, so no worker writes its heartbeat")
        return 1
    ok, line = check_health(settings.worker_health_dir, settings.heartbeat_ttl_s)
    print(line if ok else f"unhealthy: {line}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file)
        changes = {}
        if args.job_queue:
            changes["job_queue"] = args.job_queue
        if args.result_queue:
            changes["result_queue"] = args.result_queue
        settings = settings.with_overrides(**changes)
    except ConfigError as e:
        print(f"storyworld-worker: {e}", file=sys.stderr)
        return 2
    if args.healthcheck:
        return healthcheck(settings)
    buffer = LogBuffer(settings.worker_log_lines_interval_s)
    setup_logging(args.log_file or settings.worker_log_file or None, args.verbose, buffer)
    if not settings.redis_url:
        print(
            "storyworld-worker: REDIS_URL is not set. Point it at the deployment's Redis "
            "(or use `storyworld render`, which starts local workers).",
            file=sys.stderr,
        )
        return 2
    wanted = [
        b.strip() for b in (args.backends or settings.worker_backends).split(",") if b.strip()
    ] or None
    try:
        backends = choose_backends(settings, wanted)
        store = open_store(settings)
        store.check()
    except (ConfigError, StorageError) as e:
        print(f"storyworld-worker: {redact(str(e))}", file=sys.stderr)
        return 2
    clients = connect(settings, role="storyworld-worker")
    # One connection for the blocking wait, so a stop can interrupt it by closing it.
    waiting = clients.blocking
    queue = JobQueue.from_settings(settings, clients.fast, waiting)
    try:
        clients.fast.ping()
    except Exception as e:
        log.warning("%s; will keep trying", describe_redis_error(e, clients.url_for_display))
    if args.warm_up:
        for b in backends.values():
            b.warm_up()

    def interrupt() -> None:
        try:
            waiting.connection_pool.disconnect(inuse_connections=True)
        except Exception:
            pass

    n = max(1, args.concurrency or settings.worker_concurrency)
    base_id = args.worker_id
    workers = [
        Worker(
            settings,
            queue,
            store,
            backends,
            worker_id=(f"{base_id}-{i}" if base_id and n > 1 else base_id),
            idle_exit_s=args.idle_exit,
            max_jobs=args.max_jobs,
            logs=buffer,
            interrupt_wait=interrupt,
            redis_display=clients.url_for_display,
        )
        for i in range(n)
    ]

    def on_signal(signum: int, _frame: object) -> None:
        for w in workers:
            w.request_stop()

    for w in workers:
        w.exit_after_grace = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if n == 1:
        reason = workers[0].run()
    else:
        threads = [
            threading.Thread(target=w.run, name=f"worker-{i}") for i, w in enumerate(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)
        reason = "stopped"
    clients.close()
    log.info("exiting: %s", reason)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
