"""The worker: fetch, render, encode, upload, report — top to bottom.

Three threads:
- the main loop takes a job (a reserve script, or a blocking wait on the wake tokens of its
  backends when there is nothing to take), renders it and hands the encoded clip to
- the uploader, which stores the files and acknowledges the job, so job N uploads while
  job N+1 renders;
- the keeper, which renews the leases of held jobs with the heartbeat (every
  LEASE_RENEW_SECONDS while busy, every WORKER_IDLE_BLOCK_SECONDS while idle) and learns
  which jobs were cancelled or reclaimed.

Redis going away makes every thread wait and retry with backoff; nothing is dropped.
"""

from __future__ import annotations

import collections
import logging
import os
import queue as stdqueue
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from storyworld import __version__
from storyworld.config import Settings, redact
from storyworld.protocol import (
    ArtifactRef,
    ErrorKind,
    Heartbeat,
    Job,
    ProtocolError,
    Result,
    ResultStatus,
    UploadEvent,
    WorkerState,
    parse_job,
)
from storyworld.queue import JobQueue, ProblemLog, Reservation, control
from storyworld.storage import (
    ArtifactStore,
    StorageError,
    audio_key,
    clip_key,
    keyframe_key,
    last_frame_key,
    settings_key,
)
from storyworld.worker.backends.base import (
    PermanentRenderError,
    RenderBackend,
    RenderCancelled,
    RenderContext,
    TransientRenderError,
)
from storyworld.worker.encode import EncodedClip, encode_output
from storyworld.worker.gpu import gpu_status, vram_gb
from storyworld.worker.health import remove_health, write_health
from storyworld.worker.voice import voice_stage

__all__ = ["LogBuffer", "Worker"]

log = logging.getLogger("storyworld.worker")

#: A job message longer than this is dead-lettered unread (a 5 MB text once held a worker).
MAX_JOB_BYTES = 64 * 1024
#: Seconds a render that ignores a stop request gets after the grace period.
HARD_STOP_S = 5.0

REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


class LogBuffer(logging.Handler):
    """Keeps the newest log lines; the worker publishes them through Redis along with
    commands it sends anyway (at most once per WORKER_LOG_LINES_INTERVAL_SECONDS)."""

    def __init__(self, interval_s: float, maxlen: int = 200) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.interval_s = interval_s
        self._last = 0.0
        self._lock2 = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = redact(self.format(record))
        except Exception:
            return
        with self._lock2:
            self.lines.append(line[:500])

    def due(self) -> bool:
        """Lines wait and the interval has passed: worth a heartbeat of their own."""
        with self._lock2:
            return bool(self.lines) and time.monotonic() - self._last >= self.interval_s

    def take(self, force: bool = False) -> list[str]:
        now = time.monotonic()
        with self._lock2:
            if not self.lines or (not force and now - self._last < self.interval_s):
                return []
            self._last = now
            out = list(self.lines)
            self.lines.clear()
            return out


@dataclass
class HeldJob:
    job: Job
    raw: str
    cancel: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    steps: int = 0
    stage: str = "rendering"
    lost: bool = False
    cancelled: bool = False
    timed_out: bool = False
    started_at: float = field(default_factory=time.time)
    #: When the lease was last renewed (monotonic): at reserve, then by each heartbeat.
    renewed_at: float = field(default_factory=time.monotonic)

    def set_progress(self, step: int, total: int) -> None:
        self.step, self.steps = step, total


class Worker:
    """One worker loop. `run()` returns when stopped, idle for too long, or done with
    `max_jobs`."""

    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        store: ArtifactStore,
        backends: dict[str, RenderBackend],
        *,
        worker_id: str | None = None,
        idle_exit_s: float | None = None,
        max_jobs: int | None = None,
        logs: LogBuffer | None = None,
        interrupt_wait: Callable[[], None] | None = None,
        redis_display: str = "the configured REDIS_URL",
    ) -> None:
        if not backends:
            raise ValueError("a worker needs at least one backend")
        self.settings = settings
        self.queue = queue
        self.store = store
        self.backends = backends
        self.backend_names = sorted(backends)
        host = socket.gethostname()
        self.host = os.environ.get("RUNPOD_POD_ID") or host
        # "|" separates job and worker in lease entries; whitespace would confuse logs.
        raw_id = worker_id or f"{host}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.id = "".join("-" if c == "|" or c.isspace() else c for c in raw_id)
        self.idle_exit_s = settings.worker_idle_exit_s if idle_exit_s is None else idle_exit_s
        self.max_jobs = max_jobs
        self.logs = logs
        self.interrupt_wait = interrupt_wait or (lambda: None)
        self.stopping = threading.Event()
        #: In a worker process of its own (storyworld-worker): after the grace period, a
        #: render that ignores the request to stop is abandoned and the process exits.
        self.exit_after_grace = False
        # What is wrong with Redis, logged each time it changes (at most once a minute).
        self.problems = ProblemLog(log, redis_display)
        #: Drained by the operator (queue.control): finish the job in hand, take no more.
        self.draining = threading.Event()
        self.held: dict[str, HeldJob] = {}
        self._lock = threading.Lock()
        self.done = 0
        self.failed = 0
        self.started_at = time.time()
        self.vram = vram_gb()
        self._uploads: stdqueue.Queue[tuple[HeldJob, EncodedClip, dict[str, Any]] | None] = (
            stdqueue.Queue(maxsize=1)
        )
        self._last_hb = 0.0
        self._last_signature: tuple[str, ...] = ()
        self._hb_wake = threading.Event()
        # Handing the next job from an acknowledgement to the main loop (see _next_job).
        self._uploading = 0
        self._main_waiting = False
        self._handoff: stdqueue.Queue[tuple[str, str] | None] = stdqueue.Queue()
        self._next_claim: tuple[str, str] | None = None
        self._main_ident = 0
        self._exit_reason = ""
        self._keeper_done = False
        parent = os.environ.get("STORYWORLD_PARENT_PID", "")
        self._parent_pid = int(parent) if parent.isdigit() else 0

    # --------------------------------------------------------------- heartbeat
    def heartbeat_fields(self) -> dict[str, str]:
        with self._lock:
            held = list(self.held.values())
        current = next((h for h in held if h.stage == "rendering"), held[0] if held else None)
        gpu = gpu_status()
        stopping = self.stopping.is_set() or self.draining.is_set()
        state = WorkerState.DRAINING if stopping else None
        return Heartbeat(
            id=self.id,
            host=self.host,
            pid=str(os.getpid()),
            backends=",".join(self.backend_names),
            version=__version__,
            started_at=f"{self.started_at:.3f}",
            done=str(self.done),
            failed=str(self.failed),
            gpu=Heartbeat.gpu_json(gpu),
            state=state or (WorkerState.BUSY if held else WorkerState.IDLE),
            job=current.job.job_id if current else "",
            episode=current.job.episode_id if current else "",
            beat=str(current.job.beat_index) if current else "",
            stage=current.stage if current else "",
            progress=f"{current.step / current.steps:.3f}" if current and current.steps else "",
        ).to_fields()

    def _take_logs(self, force: bool = False) -> list[str]:
        return self.logs.take(force) if self.logs else []

    def _send_heartbeat(self) -> None:
        with self._lock:
            ids = list(self.held)
        fields = self.heartbeat_fields()
        # Consoles learn of a change from the event; an idle worker's unchanged heartbeat
        # only refreshes its registry entry (no event: fewer commands inside the script).
        signature = tuple(
            str(fields.get(f, "")) for f in ("state", "job", "stage", "progress", "done", "failed")
        )
        logs = self._take_logs()
        # New log lines are news too: without an event a console would read them only at
        # its next idle refresh (the worker log pane lagged minutes behind).
        changed = signature != self._last_signature or bool(ids) or bool(logs)
        reply = self.queue.heartbeat(self.id, fields, ids, logs=logs, emit_event=changed)
        self._last_signature = signature
        self._last_hb = time.monotonic()
        if self.settings.worker_health_dir:
            try:
                write_health(self.settings.worker_health_dir, self.id, {
                    "state": fields.get("state", ""), "job": fields.get("job", ""),
                })  # fmt: skip
            except OSError as e:  # the health file is for a probe; never stop work for it
                log.warning("cannot write the health file: %s", e)
        with self._lock:
            for job_id in reply.lost:
                h = self.held.get(job_id)
                if h is not None and not h.lost:
                    log.warning(
                        "lost the lease of %s (handed to another worker); stopping it", job_id
                    )
                    h.lost = True
                    h.cancel.set()
            for job_id in reply.cancelled:
                h = self.held.get(job_id)
                if h is not None and not h.cancelled:
                    log.info("job %s was cancelled; stopping it", job_id)
                    h.cancelled = True
                    h.cancel.set()

    def _keeper(self) -> None:
        delay = 1.0
        last_progress: dict[str, int] = {}
        while True:
            self._hb_wake.wait(1.0)
            self._hb_wake.clear()
            with self._lock:
                held = list(self.held.values())
            if not held and self._keeper_done:
                return
            for h in held:
                if time.time() - h.started_at > self.settings.render_timeout_s:
                    self._deadline(h)
            if self._parent_pid and os.getppid() != self._parent_pid and not self.stopping.is_set():
                log.warning("the program that started this worker is gone; stopping")
                self.request_stop()
            # A lease is fresh when the job is taken, so a job shorter than one renewal
            # interval costs no heartbeat at all; idle, one per idle block.
            now = time.monotonic()
            oldest = min((h.renewed_at for h in held), default=now)
            progressed = any(last_progress.get(h.job.job_id) != h.step for h in held)
            due = (
                (held and now - oldest >= self.settings.lease_renew_s)
                or (held and progressed and now - oldest >= self.settings.progress_interval_s)
                or (not held and now - self._last_hb >= self.settings.worker_idle_block_s)
                # The lines of a job just finished go out within the log interval, not
                # with the next idle heartbeat minutes later (one heartbeat per idle spell).
                or (not held and self.logs is not None and self.logs.due())
            )
            if not due:
                continue
            try:
                self._send_heartbeat()
                if held:  # busy: look for an operator's command (idle, the wait hears it)
                    self._control(control.take_command(self.queue, self.id))
                for h in held:
                    h.renewed_at = now
                last_progress = {h.job.job_id: h.step for h in held}
                delay = 1.0
                self.problems.recovered()
            except REDIS_ERRORS as e:
                self.problems.report(e, delay)
                self._hb_wake.wait(delay)
                delay = min(delay * 2, 30.0)

    # --------------------------------------------------------------- main loop
    def run(self) -> str:
        """Work until stopped. Returns why it stopped."""
        log.info(
            "worker %s starting: backends %s, store %s",
            self.id,
            ",".join(self.backend_names),
            self.store.describe(),
        )
        try:
            self._send_heartbeat()  # show up in consoles at once
        except REDIS_ERRORS as e:
            self.problems.report(e, 1.0)
        self._main_ident = threading.get_ident()
        keeper = threading.Thread(target=self._keeper, name="keeper", daemon=True)
        uploader = threading.Thread(target=self._uploader, name="uploader", daemon=True)
        keeper.start()
        uploader.start()
        idle_since = time.monotonic()
        delay = 1.0
        try:
            while not self.stopping.is_set():
                if self.max_jobs is not None and self.done + self.failed >= self.max_jobs:
                    self._exit_reason = f"finished {self.max_jobs} job(s)"
                    break
                try:
                    res = self._next_job(idle_since)
                    delay = 1.0
                    self.problems.recovered()
                except REDIS_ERRORS as e:
                    if self.stopping.is_set():
                        break
                    self.problems.report(e, delay)
                    self.stopping.wait(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if res is None:
                    if (
                        self.idle_exit_s
                        and not self.held
                        and time.monotonic() - idle_since >= self.idle_exit_s
                    ):
                        self._exit_reason = f"idle for {self.idle_exit_s:g} s"
                        log.info("no work for %.0f s; exiting", self.idle_exit_s)
                        break
                    continue
                self._process(res)
                idle_since = time.monotonic()
        finally:
            self._finish(uploader, keeper)
        return self._exit_reason or "stopped"

    def _next_job(self, idle_since: float) -> Reservation | None:
        """The next job: the one the last acknowledgement took (a busy worker costs one
        script per job), else block on the wake lists of our backends (one command however
        long the wait) and claim the id that arrived (one script)."""
        claimed, self._next_claim = self._next_claim, None
        if claimed is None:
            with self._lock:
                handoff = self._uploading > 0 and not self.stopping.is_set()
                self._main_waiting = handoff
            if handoff:
                claimed = self._handoff.get()
        if claimed is None:
            timeout = self.settings.worker_idle_block_s
            if self.idle_exit_s:
                timeout = min(
                    timeout, max(0.05, self.idle_exit_s - (time.monotonic() - idle_since))
                )
            # The control list rides along in the same blocking wait (engine.fleet); while
            # drained, only it is waited on.
            own = f"{control.CONTROL_PREFIX}{self.id}"
            names = [own] if self.draining.is_set() else [*self.backend_names, own]
            got = self.queue.wait_for_work(names, timeout, self.vram)
            if got is None:
                return None
            suffix, job_id = got
            if suffix == own:
                self._control(job_id)
                return None
            if self.stopping.is_set():
                self.queue.return_payload(suffix, job_id)
                return None
            claimed = self.queue.reserve(self.id, job_id, self.backend_names, self.vram)
            if claimed is None:
                return None  # withdrawn (cancelled) meanwhile, and nothing else waits
        job_id, raw = claimed
        if len(raw) > MAX_JOB_BYTES:
            reason = f"job message of {len(raw)} bytes exceeds the limit of {MAX_JOB_BYTES}"
        else:
            try:
                job = parse_job(raw)
            except ProtocolError as e:
                reason = str(e)
            else:
                if self.stopping.is_set():
                    self._retry_redis(
                        lambda: self.queue.release(
                            job.job_id, self.id, job.backend, job.min_vram_gb
                        )
                    )
                    return None
                return Reservation(raw=raw, job=job)
        log.error("job %s cannot run (%s); moved to dead letters", job_id or "?", reason)
        self._retry_redis(lambda: self.queue.dead_letter("", job_id, self.id, reason))
        return None

    def _control(self, command: str | None) -> None:
        """Apply an operator's command: drain, resume or stop."""
        if command == "drain" and not self.draining.is_set():
            log.info("drained by the operator: finishing the job in hand, taking no more")
            self.draining.set()
        elif command == "resume" and self.draining.is_set():
            log.info("resumed by the operator: taking jobs again")
            self.draining.clear()
        elif command == "stop":
            log.info("stopped by the operator")
            self.request_stop()
        else:
            return
        self._last_signature = ()
        try:
            self._send_heartbeat()  # consoles see "draining" (or "idle") at once
        except REDIS_ERRORS:
            pass  # the keeper's next heartbeat shows it

    def _process(self, res: Reservation) -> None:
        job = res.job
        held = HeldJob(job=job, raw=res.raw)
        with self._lock:
            self.held[job.job_id] = held
        log.info(
            "job %s: beat %d of episode %s on %s (delivery %d)",
            job.job_id,
            job.beat_index,
            job.episode_id,
            job.backend,
            job.delivery,
        )
        workdir = Path(tempfile.mkdtemp(prefix=f"sw-{job.job_id[:40]}-"))
        started = time.time()
        try:
            backend = self.backends.get(job.backend)
            if backend is None:
                raise PermanentRenderError(f"this worker has no {job.backend} backend")
            # A keyframe job draws a still: no speech, no clip.
            job, speech = voice_stage(job) if job.kind != "keyframe" else (job, None)
            ctx = RenderContext(
                job=job,
                workdir=workdir,
                settings=self.settings,
                report_progress=held.set_progress,
                cancel_event=held.cancel,
                fetch_artifact=self._fetch_artifact,
                speech=speech,
            )
            out = backend.render(ctx)  # the keeper stops it past RENDER_TIMEOUT_SECONDS
            ctx.check_cancelled()
            if out.nothing:
                self._succeeded_empty(held, started)
                shutil.rmtree(workdir, ignore_errors=True)
                return
            if speech is not None:
                out.model_info["speech"] = speech.info()
            encoded = encode_output(job, out, workdir, speech)
            render_s = time.time() - started
            log.info("job %s rendered %d frames in %.1f s", job.job_id, encoded.frames, render_s)
            held.stage = "uploading"
            with self._lock:
                self._uploading += 1
            self._uploads.put(
                (
                    held,
                    encoded,
                    {
                        "started": started,
                        "render_s": render_s,
                        "model_info": out.model_info,
                        "workdir": workdir,
                    },
                )
            )
            return
        except RenderCancelled:
            self._cancelled(held)
        except PermanentRenderError as e:
            self._fail(held, str(e), ErrorKind.PERMANENT, started, e.fallback_backend)
        except TransientRenderError as e:
            self._fail(held, str(e), ErrorKind.TRANSIENT, started, e.fallback_backend)
        except MemoryError:
            self._fail(held, "out of memory", ErrorKind.TRANSIENT, started, None)
        except Exception as e:
            log.exception("job %s crashed in the %s backend", job.job_id, job.backend)
            self._fail(
                held, f"{type(e).__name__}: {redact(str(e))}", ErrorKind.TRANSIENT, started, None
            )
        shutil.rmtree(workdir, ignore_errors=True)

    def _deadline(self, held: HeldJob) -> None:
        """The render outlived RENDER_TIMEOUT_SECONDS: stop it (it is reported failed and
        the worker goes on with the next job)."""
        if held.stage == "rendering" and not held.cancel.is_set():
            log.warning(
                "job %s ran past its deadline of %g s; stopping it",
                held.job.job_id,
                self.settings.render_timeout_s,
            )
            held.timed_out = True
            held.cancel.set()

    def _succeeded_empty(self, held: HeldJob, started: float) -> None:
        """A job with nothing to store (the `bench` backend): report it at once, taking
        the next job in the same script."""
        job = held.job
        self.done += 1
        result = Result(
            job_id=job.job_id,
            episode_id=job.episode_id,
            beat_id=job.beat_id,
            attempt=job.attempt,
            status=ResultStatus.SUCCEEDED,
            worker_id=self.id,
            backend=job.backend,
            started_at=started,
            render_s=round(time.time() - started, 6),
        )
        self._ack(held, result)

    def _cancelled(self, held: HeldJob) -> None:
        job = held.job
        if held.lost:
            log.info("job %s stopped: its lease went to another worker", job.job_id)
            self._drop(held)
        elif held.timed_out:
            limit = self.settings.render_timeout_s
            self._fail(
                held,
                f"the render ran past its deadline of {limit:g} s (RENDER_TIMEOUT_SECONDS)",
                ErrorKind.TRANSIENT,
                held.started_at,
                None,
            )
        elif held.cancelled:
            self._fail(
                held,
                "cancelled by the operator",
                ErrorKind.CANCELLED,
                held.started_at,
                None,
                count=False,
            )
        else:
            log.info("handing job %s back to the queue", job.job_id)
            self._retry_redis(
                lambda: self.queue.release(job.job_id, self.id, job.backend, job.min_vram_gb)
            )
            self._drop(held)

    def _drop(self, held: HeldJob) -> None:
        with self._lock:
            self.held.pop(held.job.job_id, None)

    def _fail(
        self,
        held: HeldJob,
        error: str,
        kind: ErrorKind,
        started: float,
        fallback: str | None,
        *,
        count: bool = True,
    ) -> None:
        job = held.job
        if count:
            log.warning("job %s failed (%s): %s", job.job_id, kind.value, error)
            self.failed += 1
        result = Result(
            job_id=job.job_id,
            episode_id=job.episode_id,
            beat_id=job.beat_id,
            attempt=job.attempt,
            status=ResultStatus.FAILED,
            worker_id=self.id,
            backend=job.backend,
            error=redact(error)[:2000],
            error_kind=kind,
            fallback_backend=fallback,
            started_at=started,
            render_s=time.time() - started,
        )
        self._ack(held, result)

    def _ack(self, held: HeldJob, result: Result) -> None:
        """Report the result; take the next job in the same script when the main loop
        waits for one (or when the main loop itself reports, after a failed render)."""
        with self._lock:
            self.held.pop(held.job.job_id, None)
            on_main = threading.get_ident() == self._main_ident
            take = on_main or self._main_waiting
            if not on_main:
                self._main_waiting = False
        got: list[tuple[str, str] | None] = [None]

        def send() -> None:
            backends = self.backend_names if take and not self.stopping.is_set() else None
            got[0] = self.queue.ack(
                self.id,
                result,
                was_cancelled=held.cancelled,
                take_next=backends,
                vram_gb=self.vram,
            )

        try:
            self._retry_redis(send, forever=True)
        finally:
            if on_main:
                self._next_claim = got[0]
            elif take:
                self._handoff.put(got[0])

    def _retry_redis(self, fn: Callable[[], Any], forever: bool = False) -> None:
        delay = 1.0
        while True:
            try:
                fn()
                return
            except REDIS_ERRORS as e:
                if self.stopping.is_set() and not forever:
                    return
                self.problems.report(e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _fetch_artifact(self, key: str, dest: Path) -> Path:
        self.store.get_file(key, dest)
        return dest

    # --------------------------------------------------------------- uploads
    def _uploader(self) -> None:
        while True:
            item = self._uploads.get()
            if item is None:
                return
            held, encoded, info = item
            try:
                self._upload_and_ack(held, encoded, info)
            except Exception:
                log.exception("job %s: upload crashed", held.job.job_id)
            finally:
                shutil.rmtree(info["workdir"], ignore_errors=True)
                with self._lock:
                    self._uploading -= 1
                    leftover, self._main_waiting = self._main_waiting, False
                if leftover:
                    self._handoff.put(None)

    def _upload_and_ack(self, held: HeldJob, encoded: EncodedClip, info: dict[str, Any]) -> None:
        job = held.job
        files: list[tuple[str, str, Path]] = [
            ("clip", clip_key(job.episode_id, job.beat_index, job.attempt), encoded.clip),
            (
                "keyframe",
                keyframe_key(job.episode_id, job.beat_index, job.attempt),
                encoded.keyframe,
            ),
            (
                "settings",
                settings_key(job.episode_id, job.beat_index, job.attempt),
                encoded.settings,
            ),
        ]
        if job.kind == "keyframe":
            files = files[1:]
        if encoded.last_frame is not None:
            key = last_frame_key(job.episode_id, job.beat_index, job.attempt)
            files.append(("last_frame", key, encoded.last_frame))
        if encoded.audio is not None:
            files.append(
                ("audio", audio_key(job.episode_id, job.beat_index, job.attempt), encoded.audio)
            )
        artifacts: list[ArtifactRef] = []
        uploads: list[UploadEvent] = []
        try:
            for kind, key, path in files:
                stored = self._put_with_retry(key, path, job)
                artifacts.append(
                    ArtifactRef(
                        kind=kind,
                        key=stored.key,
                        size=stored.size,
                        sha256=stored.sha256,
                        content_type=stored.content_type,
                    )
                )
                uploads.append(
                    UploadEvent(
                        key=stored.key,
                        size=stored.size,
                        seconds=round(stored.seconds, 4),
                        bytes_per_s=round(stored.bytes_per_s, 1),
                        worker_id=self.id,
                        episode_id=job.episode_id,
                        beat_index=job.beat_index,
                    )
                )
        except StorageError as e:
            self._remove_partial(artifacts)
            self._fail(held, f"upload failed: {e}", ErrorKind.TRANSIENT, info["started"], None)
            return
        self.done += 1
        result = Result(
            job_id=job.job_id,
            episode_id=job.episode_id,
            beat_id=job.beat_id,
            attempt=job.attempt,
            status=ResultStatus.SUCCEEDED,
            worker_id=self.id,
            backend=job.backend,
            artifacts=artifacts,
            uploads=uploads,
            started_at=info["started"],
            render_s=round(info["render_s"], 3),
            frames=encoded.frames,
            model_info=info["model_info"],
        )
        self._ack(held, result)
        log.info("job %s done: %s", job.job_id, artifacts[0].key)

    def _remove_partial(self, artifacts: list[ArtifactRef]) -> None:
        """A failed upload leaves none of the attempt's files behind: the ones already
        stored are deleted (best effort; a key left over is overwritten by no other
        attempt, as keys name the attempt)."""
        for a in artifacts:
            try:
                self.store.delete(a.key)
            except StorageError as e:
                log.warning("could not remove %s after a failed upload: %s", a.key, e)

    def _put_with_retry(self, key: str, path: Path, job: Job):  # type: ignore[no-untyped-def]
        delay = 1.0
        for attempt in range(1, 4):
            try:
                return self.store.put_file(
                    key,
                    path,
                    metadata={"job": job.job_id, "episode": job.episode_id, "worker": self.id},
                )
            except StorageError as e:
                if not e.transient or attempt == 3:
                    raise
                log.warning("upload of %s failed (%s); retrying in %.0f s", key, e, delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # --------------------------------------------------------------- stopping
    def request_stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; finish the ones in hand within the grace period, then hand
        them back. Safe to call from a signal handler."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        log.info("stopping: finishing work in hand (grace %.0f s)", grace)
        self.interrupt_wait()

        def expire() -> None:
            with self._lock:
                held = list(self.held.values())
            for h in held:
                if h.stage == "rendering":
                    h.cancel.set()
            if self.exit_after_grace and held:
                # A render that ignores the request to stop gets a few seconds more; then
                # its job goes back to the queue and the process exits.
                later = threading.Timer(HARD_STOP_S, self._hard_stop)
                later.daemon = True
                later.start()

        timer = threading.Timer(grace, expire)
        timer.daemon = True
        timer.start()

    def _hard_stop(self) -> None:
        with self._lock:
            held = [h for h in self.held.values() if h.stage == "rendering"]
        if not held:
            return
        for h in held:
            job = h.job
            log.warning(
                "job %s did not stop within the grace period; handing it back and exiting",
                job.job_id,
            )
            try:
                self.queue.release(job.job_id, self.id, job.backend, job.min_vram_gb)
            except REDIS_ERRORS as e:
                self.problems.report(e, 0)  # its lease runs out and the engine reclaims it
        try:
            self.queue.forget_worker(self.id)
        except REDIS_ERRORS:
            pass
        logging.shutdown()
        os._exit(0)

    def _hand_back(self, job_id: str, raw: str) -> None:
        try:
            job = parse_job(raw)
        except ProtocolError as e:
            reason = str(e)
            self._retry_redis(lambda: self.queue.dead_letter("", job_id, self.id, reason))
            return
        self._retry_redis(
            lambda: self.queue.release(job.job_id, self.id, job.backend, job.min_vram_gb)
        )

    def _finish(self, uploader: threading.Thread, keeper: threading.Thread) -> None:
        self._uploads.put(None)
        uploader.join()
        # A job taken along with the last acknowledgement but never started goes back.
        claims = [self._next_claim]
        while not self._handoff.empty():
            claims.append(self._handoff.get_nowait())
        self._next_claim = None
        for claim in claims:
            if claim is None:
                continue
            self._hand_back(*claim)
        self._keeper_done = True
        self._hb_wake.set()
        keeper.join(timeout=5)
        try:
            if self.logs:
                self.queue.heartbeat(
                    self.id,
                    self.heartbeat_fields(),
                    [],
                    logs=self._take_logs(force=True),
                    emit_event=False,
                )
            self.queue.forget_worker(self.id)
        except REDIS_ERRORS:
            pass
        if self.settings.worker_health_dir:
            remove_health(self.settings.worker_health_dir, self.id)
        log.info("worker %s stopped (%d done, %d failed)", self.id, self.done, self.failed)
