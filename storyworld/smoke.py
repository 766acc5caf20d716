"""`storyworld smoke`: the deployment guide's Testing list, end to end, with timings.

Create a one-beat episode (through the HTTP API with `--api`, else the engine services),
see its job wait in `LLEN` of the job queue, see a live worker take it, see the clip in
storage, see the result come back through the result queue, see the episode complete and
its file download. Then remove what it created.

Safe against production: its episode is its own (tagged title, one 1-second beat at a
small size), it never touches other episodes or keys, every wait is bounded, and a
failed run still cleans up. It watches the queue's event stream (one blocking XREAD per
batch of events) rather than polling Redis, so it costs a few dozen commands.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import delete, select

from storyworld.config import Settings, redact
from storyworld.engine import services
from storyworld.engine.models import Base, Episode, Transition
from storyworld.engine.planner import plan_script
from storyworld.engine.runtime import Runtime, open_runtime
from storyworld.queue.fleet import fleet_stats
from storyworld.storage import LocalStore, StorageError

__all__ = ["CHEAPEST_FIRST", "SmokeOutcome", "Step", "run_smoke"]

#: Backends from the cheapest to run to the dearest (veo is billed per second of video).
CHEAPEST_FIRST = ("animatic", "animatediff", "ltx", "wan", "svd", "veo")
SMOKE_SIZE = "256x128"
SMOKE_STEPS = 2
TERMINAL = ("completed", "failed", "cancelled")


class StepFailed(Exception):
    """A step did not happen; the message says what to check."""

    def __init__(self, detail: str, advice: str) -> None:
        super().__init__(detail)
        self.detail, self.advice = detail, advice


@dataclass
class Step:
    name: str
    ok: bool
    seconds: float
    detail: str
    advice: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
            "advice": self.advice,
        }


@dataclass
class SmokeOutcome:
    backend: str
    episode_id: str = ""
    steps: list[Step] = field(default_factory=list)
    cleanup: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> str | None:
        return next((s.name for s in self.steps if not s.ok), None)

    def text(self) -> str:
        lines = []
        for i, s in enumerate(self.steps, 1):
            mark = "✓" if s.ok else "✗"
            line = f"{mark} {i}. {s.name} ({s.seconds:.2f} s): {s.detail}"
            if s.advice:
                line += f"\n     check: {s.advice}"
            lines.append(line)
        if self.cleanup:
            lines.append(f"- cleanup: {self.cleanup}")
        total = sum(s.seconds for s in self.steps)
        if self.ok:
            lines.append(f"smoke passed on {self.backend} in {total:.1f} s")
        else:
            lines.append(f"smoke FAILED at: {self.failed_step}")
        return redact("\n".join(lines))

    def as_json(self) -> str:
        doc = {
            "ok": self.ok,
            "backend": self.backend,
            "episode_id": self.episode_id,
            "failed_step": self.failed_step,
            "steps": [s.as_dict() for s in self.steps],
            "cleanup": self.cleanup,
        }
        return redact(json.dumps(doc, indent=2, sort_keys=True))


# ----------------------------------------------------------------- where episodes live
class ServicesFace:
    """Episodes through the engine services (this machine reaches the database)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def create(self, script: str, title: str, backend: str, tag: str) -> str:
        plan = plan_script(script, default_beat_s=1.0, max_beat_s=self.rt.settings.max_beat_seconds)
        d = services.create_episode(
            self.rt,
            plan,
            script=script,
            title=title,
            backend=backend,
            size=services.parse_size(SMOKE_SIZE),
            fps=8,
            steps=SMOKE_STEPS,
            seed=1,
            options={"smoke": tag},
        )
        return str(d["id"])

    def detail(self, episode_id: str) -> dict[str, Any]:
        return services.episode_detail(self.rt, episode_id)

    def download(self, detail: dict[str, Any], dest: Path) -> int:
        self.rt.store.get_file(detail["output_key"], dest, verify=True)
        return dest.stat().st_size

    def remove(self, episode_id: str) -> str:
        d = self.detail(episode_id)
        if d["state"] not in TERMINAL:
            services.cancel_episode(self.rt, episode_id)
        keys = [a["key"] for a in d["artifacts"]]
        for key in keys:
            self.rt.store.delete(key)
        beat_ids = [b["id"] for b in d["beats"]]
        job_ids = [j["job_id"] for b in d["beats"] for j in b["jobs"]]
        with self.rt.sessions.begin() as s:
            s.execute(
                delete(Transition).where(
                    Transition.entity_id.in_([episode_id, *beat_ids, *job_ids])
                )
            )
            # Every table that records something of an episode has its episode_id;
            # children first (sorted_tables puts a table after those it refers to).
            for table in reversed(Base.metadata.sorted_tables):
                if "episode_id" in table.c:
                    s.execute(delete(table).where(table.c.episode_id == episode_id))
            s.execute(delete(Episode).where(Episode.id == episode_id))
        return f"deleted episode {episode_id} and its {len(keys)} stored object(s)"

    def exists(self, episode_id: str) -> bool:
        with self.rt.sessions() as s:
            return s.scalar(select(Episode.id).where(Episode.id == episode_id)) is not None


class ApiFace:
    """Episodes through the HTTP API (`--api URL`)."""

    def __init__(self, rt: Runtime, base: str, token: str) -> None:
        self.rt = rt
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base.rstrip("/"), headers=headers, timeout=30.0)

    def _ok(self, resp: httpx.Response) -> dict[str, Any]:
        if resp.status_code >= 400:
            try:
                msg = resp.json().get("error", resp.text)
            except ValueError:
                msg = resp.text
            raise StepFailed(
                f"the API answered {resp.status_code}: {msg}",
                "is the URL right, and API_TOKEN (or --api-token) the server's token?",
            )
        return dict(resp.json())

    def create(self, script: str, title: str, backend: str, tag: str) -> str:
        body = {"script": script, "title": title, "backend": backend, "size": SMOKE_SIZE}
        body.update({"fps": 8, "steps": SMOKE_STEPS, "seed": 1})
        return str(self._ok(self.http.post("/v1/episodes", json=body))["id"])

    def detail(self, episode_id: str) -> dict[str, Any]:
        return self._ok(self.http.get(f"/v1/episodes/{episode_id}"))

    def download(self, detail: dict[str, Any], dest: Path) -> int:
        resp = self.http.get(f"/v1/episodes/{detail['id']}/video", follow_redirects=True)
        if resp.status_code != 200:
            raise StorageError(f"GET /v1/episodes/{detail['id']}/video: {resp.status_code}")
        dest.write_bytes(resp.content)
        return len(resp.content)

    def remove(self, episode_id: str) -> str:
        d = self.detail(episode_id)
        if d["state"] not in TERMINAL:
            self.http.post(f"/v1/episodes/{episode_id}/cancel")
        keys = [a["key"] for a in d["artifacts"]]
        for key in keys:
            self.rt.store.delete(key)
        self.http.close()
        return (
            f"deleted {len(keys)} stored object(s); the API cannot delete episodes, so "
            f"episode {episode_id} stays, {'cancelled' if d['state'] not in TERMINAL else ''}"
            f"{d['state'] if d['state'] in TERMINAL else ''} and titled 'storyworld smoke'"
        )


# ----------------------------------------------------------------- the run
class Smoke:
    def __init__(self, rt: Runtime, face: Any, backend: str, timeout_s: float) -> None:
        self.rt = rt
        self.face = face
        self.backend = backend
        self.timeout_s = timeout_s
        self.keys = rt.queue.keys
        self.events_from = "0-0"
        self.seen: dict[str, dict[str, Any]] = {}  # event type -> data, for our job
        self.job_id = ""
        self.episode_id = ""

    # ---- helpers
    def _wait(self, what: Callable[[], Any], seconds: float | None = None) -> Any:
        deadline = time.monotonic() + (seconds or self.timeout_s)
        delay = 0.05
        while True:
            got = what()
            if got:
                return got
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 1.0)

    def _events(self, block_s: float) -> None:
        """Read new events of the queue's stream; keep those about our job."""
        reply = self.rt.queue.read_events(self.events_from, max(1, int(block_s * 1000)))
        for entry_id, kind, data in reply:
            self.events_from = entry_id
            if data.get("job_id") == self.job_id and self.job_id:
                self.seen.setdefault(kind, data)

    def _wait_event(self, kinds: tuple[str, ...]) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            for k in kinds:
                if k in self.seen:
                    return {"type": k, **self.seen[k]}
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._events(min(left, 5.0))

    def _job(self, detail: dict[str, Any]) -> dict[str, Any] | None:
        jobs = detail["beats"][0]["jobs"] if detail["beats"] else []
        return jobs[-1] if jobs else None

    # ---- steps
    def create(self) -> str:
        last = self.rt.clients.fast.xrevrange(self.keys.events, count=1)
        if last:
            self.events_from = last[0][0].decode()
        tag = uuid.uuid4().hex[:8]
        script = f"[1s] StoryWorld smoke test {tag}: a lighthouse blinks once."
        self.episode_id = self.face.create(script, f"storyworld smoke {tag}", self.backend, tag)
        return (
            f"episode {self.episode_id} ('storyworld smoke {tag}', one 1 s beat) on {self.backend}"
        )

    def queued(self) -> str:
        detail = self._wait(lambda: (d := self.face.detail(self.episode_id)) and self._job(d) and d)
        if not detail:
            st = self.rt.queue.stats()
            if st.engine is None:
                advice = (
                    "no engine holds the dispatch lease on these queues: start "
                    "`storyworld engine` (or `storyworld serve`, or the console) with the same "
                    f"REDIS_URL and JOB_QUEUE ({self.rt.settings.job_queue})"
                )
            elif st.paused:
                advice = "dispatch is paused: `storyworld queue resume`"
            else:
                advice = (
                    f"the engine {st.engine.get('engine')} did not dispatch; is it on the same "
                    "DATABASE_URL as this machine? see its log"
                )
            raise StepFailed(f"no job was dispatched within {self.timeout_s:g} s", advice)
        self.job_id = self._job(detail)["job_id"]
        r = self.rt.clients.fast
        seen: dict[str, int] = {}

        def on_the_list_or_taken() -> str | None:
            # The engine records a job before it enqueues it, so look until it is on the
            # list, or a worker has already taken it (its "started" event).
            self._events(0.001)
            with r.pipeline(transaction=False) as p:
                p.llen(self.keys.jobs)
                p.zscore(self.keys.waiting, self.job_id)
                waiting, score = p.execute()
            seen["waiting"] = int(waiting)
            if score is not None:
                return "waiting"
            return "taken" if "started" in self.seen else None

        found = self._wait(on_the_list_or_taken)
        if found == "waiting":
            return f"job {self.job_id} waits: LLEN {self.keys.jobs} = {seen['waiting']}"
        if found == "taken":
            return (
                f"job {self.job_id} was taken before it could be seen waiting "
                f"(LLEN {self.keys.jobs} = {seen['waiting']} now)"
            )
        raise StepFailed(
            f"job {self.job_id} is recorded as queued but never showed on {self.keys.jobs} "
            f"within {self.timeout_s:g} s",
            "the engine and this machine use different JOB_QUEUE names or Redis databases; "
            "compare REDIS_URL (including /db) and JOB_QUEUE on both",
        )

    def taken(self) -> str:
        ev = self._wait_event(("started",))
        if ev is None:
            raise StepFailed(
                f"no worker took job {self.job_id} within {self.timeout_s:g} s",
                self._no_worker_advice(),
            )
        worker = ev.get("worker", "")
        hb = {
            k.decode(): v.decode()
            for k, v in self.rt.clients.fast.hgetall(self.keys.worker(worker)).items()
        }
        if not hb:
            raise StepFailed(
                f"worker {worker} took the job but has no live heartbeat",
                "the worker may have died right after; see its log",
            )
        if hb.get("job") == self.job_id:
            names = " (its heartbeat names the job)"
        else:
            # A worker renews its lease (and so rewrites its heartbeat) only every
            # LEASE_RENEW_SECONDS: a quick job is over before its heartbeat would name it.
            names = f" (heartbeat live, {hb.get('state') or '?'}; it names a job held longer"
            names += f" than LEASE_RENEW_SECONDS={self.rt.settings.lease_renew_s:g})"
        host = hb.get("host", "?")
        return f"worker {worker} on {host} took job {self.job_id}{names}"

    def _no_worker_advice(self) -> str:
        fleet = fleet_stats(self.rt.clients.fast, self.keys).as_dict()
        load = fleet["by_backend"].get(self.backend, {"workers": 0, "busy": 0})
        q = self.rt.settings.job_queue
        if fleet["workers"] == 0:
            return (
                f"no worker has a live heartbeat on {q}: start `storyworld-worker "
                f"--backends {self.backend}` with the same REDIS_URL and JOB_QUEUE ({q}); "
                "on a pod, run `storyworld doctor --role worker` first"
            )
        if load["workers"] == 0:
            offered = sorted(b for b, v in fleet["by_backend"].items() if v["workers"])
            return (
                f"{fleet['workers']} live worker(s), none offering {self.backend} (they offer "
                f"{', '.join(offered)}): start one with --backends {self.backend}, or run "
                f"smoke with --backend {offered[0] if offered else 'animatic'}"
            )
        if load["busy"] >= load["workers"]:
            return f"every {self.backend} worker is busy; try again, or add a worker"
        return (
            f"{load['workers']} idle {self.backend} worker(s) did not take it: is their GPU "
            "big enough, and are they blocked on Redis? see `storyworld queue stats` and "
            "their logs"
        )

    def stored(self) -> str:
        ev = self._wait_event(("done", "failed"))
        if ev is None:
            raise StepFailed(
                f"job {self.job_id} did not finish within {self.timeout_s:g} s",
                "see the worker's log (the console's log pane); a first job also loads the "
                "model; try a longer --timeout",
            )
        if ev["type"] == "failed" or not ev.get("uploads"):
            raise StepFailed(
                f"the worker reported a failure: {ev.get('error') or 'no upload'}",
                "run `storyworld doctor --role worker` on the worker; for upload errors "
                "check that its S3_ENDPOINT, S3_BUCKET and keys are the engine's",
            )
        clip = next((u for u in ev["uploads"] if u["key"].endswith(".mp4")), ev["uploads"][0])
        head = self.rt.store.head(clip["key"])
        if head is None:
            raise StepFailed(
                f"the worker says it uploaded {clip['key']} but it is not in "
                f"{self.rt.store.describe()}",
                "the worker writes to another bucket or prefix: compare S3_BUCKET, S3_PREFIX "
                "and S3_ENDPOINT (or STORAGE_URL) on the worker and here",
            )
        return f"{clip['key']} in storage, {head.size} bytes, sha256 {head.sha256[:12]}…"

    def result(self) -> str:
        def applied() -> Any:
            job = self._job(self.face.detail(self.episode_id))
            return job if job and job["state"] not in ("queued", "rendering") else None

        job = self._wait(applied)
        if job is None:
            pending = self.rt.clients.fast.xlen(self.keys.results)
            raise StepFailed(
                f"the result of {self.job_id} was not applied within {self.timeout_s:g} s "
                f"({pending} result(s) on {self.keys.results})",
                "no engine reads this RESULT_QUEUE: the worker's RESULT_QUEUE must equal the "
                f"engine's ({self.rt.settings.result_queue}) and an engine must run",
            )
        if job["state"] != "succeeded":
            raise StepFailed(
                f"the engine recorded the job as {job['state']}: {job.get('error')}",
                "see the episode's history: `storyworld episode show ID`",
            )
        return f"the worker's result came back on {self.keys.results} and the engine applied it"

    def completed(self) -> str:
        detail = self._wait(
            lambda: (d := self.face.detail(self.episode_id))["state"] in TERMINAL and d
        )
        if not detail or detail["state"] != "completed":
            state = detail["state"] if detail else "not finished"
            raise StepFailed(
                f"the episode is {state} (error: {(detail or {}).get('error')})",
                "the engine composes the episode once every beat is done: see its log; the "
                "composer needs to read clips from the same storage",
            )
        with tempfile.TemporaryDirectory(prefix="sw-smoke-") as tmp:
            try:
                size = self.face.download(detail, Path(tmp) / "episode.mp4")
            except StorageError as e:
                raise StepFailed(
                    f"the episode file {detail['output_key']} cannot be downloaded: {e}",
                    "check S3_PUBLIC_BASE_URL (if set) and that presigned links work: "
                    "`storyworld doctor`",
                ) from None
        link = ""
        if not isinstance(self.rt.store, LocalStore):
            url = self.rt.store.url_for(detail["output_key"], 300)
            resp = httpx.get(url, timeout=30.0)
            if resp.status_code != 200:
                raise StepFailed(
                    f"the episode's link answered HTTP {resp.status_code}",
                    "presigned links need S3_REGION and this clock right; a public base URL "
                    "must serve this bucket",
                )
            link = ", and through its link"
        return f"episode completed; {detail['output_key']} downloaded ({size} bytes){link}"


STEPS: tuple[tuple[str, str], ...] = (
    ("create a one-beat episode", "create"),
    ("its job waits in the job queue", "queued"),
    ("a worker takes the job", "taken"),
    ("the clip is in storage", "stored"),
    ("the result comes back on the result queue", "result"),
    ("the episode completes and its file downloads", "completed"),
)


def pick_backend(rt: Runtime) -> str:
    """The cheapest backend a live worker offers; else DEFAULT_BACKEND."""
    fleet = fleet_stats(rt.clients.fast, rt.queue.keys)
    for name in CHEAPEST_FIRST:
        if fleet.by_backend.get(name) and fleet.by_backend[name].workers:
            return name
    return rt.settings.default_backend


def run_smoke(
    settings: Settings,
    *,
    api: str | None = None,
    backend: str | None = None,
    timeout_s: float = 120.0,
    api_token: str | None = None,
) -> SmokeOutcome:
    """Run every step in order, stop at the first failure, always clean up."""
    rt = open_runtime(settings, role="storyworld-smoke")
    try:
        try:
            chosen = backend or pick_backend(rt)
        except redis.RedisError as e:
            out = SmokeOutcome(backend=backend or "?")
            out.steps.append(
                Step(
                    STEPS[0][0],
                    False,
                    0.0,
                    f"Redis: {type(e).__name__}",
                    "run `storyworld doctor` to see what is wrong with REDIS_URL",
                )
            )
            return out
        token = api_token if api_token is not None else settings.api_token.get()
        face = ApiFace(rt, api, token) if api else ServicesFace(rt)
        smoke = Smoke(rt, face, chosen, timeout_s)
        out = SmokeOutcome(backend=chosen)
        try:
            for name, method in STEPS:
                t0 = time.monotonic()
                try:
                    detail = getattr(smoke, method)()
                    out.steps.append(Step(name, True, time.monotonic() - t0, detail))
                except StepFailed as e:
                    out.steps.append(Step(name, False, time.monotonic() - t0, e.detail, e.advice))
                    break
                except (redis.RedisError, StorageError, httpx.HTTPError, OSError) as e:
                    out.steps.append(
                        Step(
                            name,
                            False,
                            time.monotonic() - t0,
                            f"{type(e).__name__}: {redact(str(e))}",
                            "run `storyworld doctor` here (and `--role worker` on a pod)",
                        )
                    )
                    break
        finally:
            out.episode_id = smoke.episode_id
            if smoke.episode_id:
                try:
                    out.cleanup = face.remove(smoke.episode_id)
                except Exception as e:  # report, never hide the step's own outcome
                    out.cleanup = f"could not clean up episode {smoke.episode_id}: {e}"
        return out
    finally:
        rt.close()
