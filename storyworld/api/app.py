"""The HTTP API: episodes and the queue over JSON, on top of `storyworld.engine.services`.

Every endpoint that touches the database, Redis or the store is a plain `def`, so FastAPI
runs it in its thread pool and the event loop never blocks. Errors are JSON
`{"error": "..."}` bodies whose messages pass through `config.redact`.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from storyworld import __version__
from storyworld.config import ConfigError, redact
from storyworld.engine import services
from storyworld.engine.cast import CastError, load_cast
from storyworld.engine.planner import ScriptError, ScriptPlan
from storyworld.engine.runtime import Runtime
from storyworld.queue import describe_redis_error
from storyworld.storage import LocalStore, StorageError

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("storyworld.api")

# How long a passing storage check counts for /readyz: an S3 check is three requests
# (put, head, delete), too many to repeat for every probe of a load balancer.
STORE_CHECK_TTL_S = 60.0
MAX_SCRIPT_CHARS = 2_000_000
# At module level: FastAPI resolves the (postponed) annotations of endpoints in the module.
_BEARER = HTTPBearer(auto_error=False)


class ApiError(Exception):
    """An error with its HTTP status; the message is shown to the client (redacted)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


# --------------------------------------------------------------------------- request bodies
class ScriptBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    script: str = Field(max_length=MAX_SCRIPT_CHARS, description="the script text")
    format: Literal["plain", "fountain"] | None = Field(
        default=None, description="plain or fountain; guessed when absent"
    )


class EpisodeCreate(ScriptBody):
    title: str | None = Field(default=None, max_length=300)
    backend: str | None = None
    size: str | None = Field(default=None, description="WIDTHxHEIGHT, e.g. 512x288")
    fps: int | None = Field(default=None, ge=1, le=120)
    steps: int | None = Field(default=None, ge=1, le=500)
    seed: int | None = None
    cast: str | None = Field(
        default=None,
        max_length=4096,
        description="a cast file on the server (its reference images are relative to it)",
    )
    keyframes: Literal["off", "auto", "on"] | None = None
    candidates: int | None = Field(default=None, ge=1, le=8)
    approve: bool = False


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beat: int | None = Field(default=None, ge=0, description="beat index (0-based); all")


class RerollBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(default=None, ge=0)
    text: str | None = Field(default=None, min_length=1, max_length=4000)


class RetryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    beat: int | None = Field(
        default=None, ge=0, description="beat index (0-based, as in the detail); all failed"
    )


class DeadLetterSelection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_ids: list[str] | None = None
    all: bool = False

    def chosen(self) -> list[str] | None:
        """The ids to act on, or None for every dead letter."""
        if self.all and self.job_ids:
            raise ApiError(422, "give job_ids or all: true, not both")
        if self.all:
            return None
        if not self.job_ids:
            raise ApiError(422, "name the dead letters with job_ids, or send all: true")
        return self.job_ids


# --------------------------------------------------------------------------- helpers
def _error(status_code: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": redact(message), **extra}, status_code=status_code)


def _plan_dict(plan: ScriptPlan) -> dict[str, Any]:
    return {
        "title": plan.title,
        "format": plan.format,
        "beats_total": len(plan.beats),
        "total_s": plan.total_seconds,
        "beats": [
            {
                "index": b.index,
                "text": b.text,
                "duration_s": b.duration_s,
                "scene": b.scene,
                "captions": list(b.captions),
                "line": b.line,
            }
            for b in plan.beats
        ],
    }


def _plan(rt: Runtime, body: ScriptBody) -> ScriptPlan:
    try:
        return services.plan_text(rt, body.script, body.format, source="script")
    except ScriptError as e:
        raise ApiError(422, str(e)) from None


def _worker_row(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    try:
        out["gpu"] = json.loads(row["gpu"]) if row.get("gpu") else None
    except ValueError:
        out["gpu"] = None
    return out


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return "; ".join(parts) or "invalid request"


class _StoreCheck:
    """Remembers a passing storage check for a while; a failing one is retried each time."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.passed_at = float("-inf")
        self.lock = threading.Lock()

    def run(self) -> None:
        with self.lock:
            if time.monotonic() - self.passed_at < STORE_CHECK_TTL_S:
                return
            self.rt.store.check()
            self.passed_at = time.monotonic()


def _readiness(rt: Runtime, store_check: _StoreCheck) -> tuple[dict[str, str], str | None]:
    checks: dict[str, str] = {}
    problem = None
    try:
        rt.clients.fast.ping()
        checks["redis"] = "ok"
    except redis.RedisError as e:
        problem = describe_redis_error(e, "the configured REDIS_URL")
        checks["redis"] = problem
    try:
        with rt.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as e:
        first = (str(getattr(e, "orig", None) or "").splitlines() or [type(e).__name__])[0]
        checks["database"] = redact(f"database unavailable: {first}")
        problem = problem or checks["database"]
    try:
        store_check.run()
        checks["storage"] = "ok"
    except StorageError as e:
        checks["storage"] = redact(f"storage: {e}")
        problem = problem or checks["storage"]
    return checks, problem


# --------------------------------------------------------------------------- the app
def create_app(
    runtime: Runtime, *, read_only: bool = False, api_token: str | None = None
) -> FastAPI:
    """The API for `runtime`. With `read_only`, every change answers 403. With `api_token`,
    every /v1 route needs `Authorization: Bearer <api_token>`."""
    rt = runtime
    app = FastAPI(
        title="StoryWorld",
        version=__version__,
        description="Turn story scripts into rendered video episodes.",
    )
    store_check = _StoreCheck(rt)
    expected = api_token.encode() if api_token else None

    async def authorize(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if expected is None:
            return
        given = creds.credentials.encode() if creds is not None else b""
        if not hmac.compare_digest(given, expected):
            raise ApiError(401, "a valid bearer token is required (Authorization: Bearer ...)")

    async def writable() -> None:
        if read_only:
            raise ApiError(403, "this API is read-only")

    _install_error_handlers(app)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        checks, problem = _readiness(rt, store_check)
        if problem:
            return _error(503, problem, ready=False, checks=checks)
        return JSONResponse({"ready": True, "checks": checks})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
    change = [Depends(writable)]
    _episode_routes(v1, rt, change)
    _artifact_routes(v1, rt)
    _queue_routes(v1, rt, change)
    app.include_router(v1)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        resp = _error(exc.status_code, exc.message)
        if exc.status_code == 401:
            resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    @app.exception_handler(services.NotFound)
    async def not_found(_req: Request, exc: services.NotFound) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = _error(exc.status_code, str(exc.detail))
        resp.headers.update(exc.headers or {})
        return resp

    @app.exception_handler(redis.RedisError)
    async def redis_error(_req: Request, exc: redis.RedisError) -> JSONResponse:
        return _error(503, describe_redis_error(exc, "the configured REDIS_URL"))

    @app.exception_handler(StorageError)
    async def storage_error(_req: Request, exc: StorageError) -> JSONResponse:
        return _error(503 if exc.transient else 502, f"storage: {exc}")

    @app.exception_handler(SQLAlchemyError)
    async def db_error(_req: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %s", redact((str(exc).splitlines() or ["?"])[0]))
        return _error(503, "the database is unavailable; try again")

    @app.exception_handler(Exception)
    async def unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", redact(repr(exc)), exc_info=exc)
        return _error(500, "internal error; see the server log")


def _episode_routes(r: APIRouter, rt: Runtime, change: list[Any]) -> None:
    @r.post("/episodes", status_code=201, dependencies=change, tags=["episodes"])
    def create_episode(body: EpisodeCreate, response: Response) -> dict[str, Any]:
        plan = _plan(rt, body)
        try:
            cast = load_cast(body.cast) if body.cast else None
            size = services.parse_size(body.size) if body.size else None
            detail = services.create_episode(
                rt,
                plan,
                script=body.script,
                title=body.title,
                backend=body.backend,
                size=size,
                fps=body.fps,
                steps=body.steps,
                seed=body.seed,
                cast=cast,
                keyframes=body.keyframes,
                candidates=body.candidates,
                approve=body.approve,
            )
        except (ConfigError, CastError) as e:
            raise ApiError(422, str(e)) from None
        response.headers["Location"] = f"/v1/episodes/{detail['id']}"
        return detail

    @r.post("/episodes/plan", tags=["episodes"])
    def plan_episode(body: ScriptBody) -> dict[str, Any]:
        return _plan_dict(_plan(rt, body))

    @r.get("/episodes", tags=["episodes"])
    def list_episodes(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return services.list_episodes(rt, limit)

    @r.get("/episodes/{episode_id}", tags=["episodes"])
    def episode_detail(episode_id: str) -> dict[str, Any]:
        return services.episode_detail(rt, episode_id)

    @r.post("/episodes/{episode_id}/retry", dependencies=change, tags=["episodes"])
    def retry_episode(episode_id: str, body: RetryBody | None = None) -> dict[str, Any]:
        return _state_change(
            lambda: services.retry_episode(rt, episode_id, body.beat if body else None)
        )

    @r.post("/episodes/{episode_id}/approve", dependencies=change, tags=["episodes"])
    def approve_episode(episode_id: str, body: ApproveBody | None = None) -> dict[str, Any]:
        beat = body.beat + 1 if body and body.beat is not None else None
        return _state_change(lambda: services.approve_episode(rt, episode_id, beat))

    @r.post("/episodes/{episode_id}/beats/{n}/reroll", dependencies=change, tags=["episodes"])
    def reroll_beat(episode_id: str, n: int, body: RerollBody | None = None) -> dict[str, Any]:
        body = body or RerollBody()
        return _state_change(
            lambda: services.reroll_beat(rt, episode_id, n + 1, seed=body.seed, text=body.text)
        )

    @r.post("/episodes/{episode_id}/cancel", dependencies=change, tags=["episodes"])
    def cancel_episode(episode_id: str) -> dict[str, Any]:
        return _state_change(lambda: services.cancel_episode(rt, episode_id))


def _state_change(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return action()
    except ConfigError as e:
        raise ApiError(409, str(e)) from None


def _artifact_routes(r: APIRouter, rt: Runtime) -> None:
    def deliver(key: str, filename: str) -> Response:
        if isinstance(rt.store, LocalStore):
            stored = rt.store.head(key)
            if stored is None:
                raise ApiError(404, f"{key} is missing from the artifact folder")
            return FileResponse(
                rt.store.local_path(key),
                media_type=stored.content_type,
                filename=filename,
                content_disposition_type="inline",
            )
        url = services.artifact_url(rt, key)
        return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)

    def beat_of(detail: dict[str, Any], n: int) -> dict[str, Any]:
        for b in detail["beats"]:
            if b["index"] == n:
                return b
        raise ApiError(404, f"episode {detail['id']} has no beat {n}")

    @r.get("/episodes/{episode_id}/video", tags=["artifacts"], response_model=None)
    def episode_video(episode_id: str) -> Response:
        d = services.episode_detail(rt, episode_id)
        if not d["output_key"]:
            raise ApiError(404, f"episode {d['id']} is not composed yet ({d['state']})")
        return deliver(d["output_key"], f"{d['id']}.mp4")

    @r.get("/episodes/{episode_id}/beats/{n}/clip", tags=["artifacts"], response_model=None)
    def beat_clip(episode_id: str, n: int) -> Response:
        d = services.episode_detail(rt, episode_id)
        beat = beat_of(d, n)
        if not beat["clip_key"]:
            raise ApiError(404, f"beat {n} of episode {d['id']} has no clip yet ({beat['state']})")
        return deliver(beat["clip_key"], f"{d['id']}-beat{n:03d}.mp4")

    @r.get("/episodes/{episode_id}/beats/{n}/keyframe", tags=["artifacts"], response_model=None)
    def beat_keyframe(episode_id: str, n: int) -> Response:
        d = services.episode_detail(rt, episode_id)
        beat = beat_of(d, n)
        if beat.get("keyframe"):  # keyframes first: the drawn (or approved) keyframe
            return deliver(beat["keyframe"], f"{d['id']}-beat{n:03d}.png")
        mine = [a for a in d["artifacts"] if a["beat_id"] == beat["id"]]
        clip_job = next((a["job_id"] for a in mine if a["key"] == beat["clip_key"]), None)
        frames = [a for a in mine if a["kind"] == "keyframe"]
        # The keyframe of the attempt whose clip the beat uses, else the latest one.
        frame = next((a for a in frames if a["job_id"] == clip_job), None) or (
            frames[-1] if frames else None
        )
        if frame is None:
            raise ApiError(404, f"beat {n} of episode {d['id']} has no keyframe yet")
        return deliver(frame["key"], f"{d['id']}-beat{n:03d}.png")


def _queue_routes(r: APIRouter, rt: Runtime, change: list[Any]) -> None:
    @r.get("/queue", tags=["queue"])
    def queue_stats() -> dict[str, Any]:
        return services.queue_stats(rt)

    @r.get("/queue/dead", tags=["queue"])
    def dead_letters(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return services.dead_letters(rt, limit)

    def matched(out: dict[str, Any], chosen: list[str] | None) -> dict[str, Any]:
        if chosen and out["unmatched"] and len(out["unmatched"]) == len(chosen):
            raise ApiError(404, f"no dead letter matches {', '.join(out['unmatched'])}")
        return out

    @r.post("/queue/dead/requeue", dependencies=change, tags=["queue"])
    def requeue_dead(body: DeadLetterSelection) -> dict[str, Any]:
        chosen = body.chosen()
        return matched(services.requeue_dead(rt, chosen), chosen)

    @r.post("/queue/dead/drop", dependencies=change, tags=["queue"])
    def drop_dead(body: DeadLetterSelection) -> dict[str, Any]:
        chosen = body.chosen()
        return matched(services.drop_dead(rt, chosen), chosen)

    @r.post("/queue/pause", dependencies=change, tags=["queue"])
    def pause() -> dict[str, Any]:
        services.set_paused(rt, True)
        return {"paused": True}

    @r.post("/queue/resume", dependencies=change, tags=["queue"])
    def resume() -> dict[str, Any]:
        services.set_paused(rt, False)
        return {"paused": False}

    @r.get("/workers", tags=["queue"])
    def workers() -> list[dict[str, Any]]:
        return [_worker_row(w) for w in rt.queue.workers()]
