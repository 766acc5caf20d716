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

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from storyworld import __version__
from storyworld.config import ConfigError, redact
from storyworld.engine import idempotency, metrics, services, webhooks
from storyworld.engine.cast import CastError, load_cast
from storyworld.engine.errors import (
    DEPENDENCY_ERRORS,
    EngineError,
    Unavailable,
    http_status,
    translate,
)
from storyworld.engine.planner import ScriptError, ScriptPlan
from storyworld.engine.runtime import Runtime
from storyworld.protocol import KNOWN_BACKENDS, limits

__all__ = ["ApiError", "create_app"]

log = logging.getLogger("storyworld.api")

# How long a passing storage check counts for /readyz: an S3 check is three requests
# (put, head, delete), too many to repeat for every probe of a load balancer.
STORE_CHECK_TTL_S = 60.0
MAX_SCRIPT_CHARS = 2_000_000
# A script of MAX_SCRIPT_CHARS characters, each up to 4 bytes of UTF-8, plus the other fields.
MAX_BODY_BYTES = 4 * MAX_SCRIPT_CHARS + 64 * 1024
# At module level: FastAPI resolves the (postponed) annotations of endpoints in the module.
_BEARER = HTTPBearer(auto_error=False)


class ApiError(Exception):
    """An error with its HTTP status; the message is shown to the client (redacted)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


# --------------------------------------------------------------------------- request bodies
# Strict: JSON types are not coerced (`"fps": true` or `"fps": "12"` is a 422, not fps 1).
_STRICT = ConfigDict(extra="forbid", strict=True)


def _json_integer(value: Any) -> Any:
    # JSON Schema's integer includes 12.0 (lax mode below takes it, and refuses 12.5); a
    # boolean or a string is never a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _json_int(**bounds: int) -> Any:
    """An integer as JSON Schema means it (12 or 12.0, never true or "12"), within bounds."""
    return Annotated[int, Field(strict=False, **bounds), BeforeValidator(_json_integer)]


#: 16 to 4096, as a pattern: a size the schema admits is a size the engine accepts.
_SIDE = r"(?:1[6-9]|[2-9][0-9]|[1-9][0-9]{2}|[1-3][0-9]{3}|40[0-8][0-9]|409[0-6])"


class ScriptBody(BaseModel):
    model_config = _STRICT

    script: str = Field(
        max_length=MAX_SCRIPT_CHARS,
        min_length=1,
        description="the script text (one paragraph per beat; blank is a 422)",
    )
    format: Literal["plain", "fountain"] | None = Field(
        default=None, description="plain or fountain; guessed when absent"
    )


class EpisodeCreate(ScriptBody):
    title: str | None = Field(default=None, max_length=limits.MAX_TITLE_CHARS)
    backend: Literal[KNOWN_BACKENDS] | None = Field(  # type: ignore[valid-type]
        default=None, description="the render backend; DEFAULT_BACKEND when absent"
    )
    size: str | None = Field(
        default=None,
        pattern=rf"^{_SIDE}x{_SIDE}$",
        description="WIDTHxHEIGHT, 16 to 4096 pixels a side, e.g. 512x288",
    )
    fps: _json_int(ge=1, le=120) | None = None
    steps: _json_int(ge=1, le=500) | None = None
    seed: _json_int(ge=0, le=limits.MAX_SEED) | None = Field(
        default=None, description="0 <= seed < 2^63"
    )
    cast: str | None = Field(
        default=None,
        max_length=4096,
        description="a cast file on the server (its reference images are relative to it)",
    )
    keyframes: Literal["off", "auto", "on"] | None = None
    candidates: _json_int(ge=1, le=8) | None = None
    approve: bool = False


class ApproveBody(BaseModel):
    model_config = _STRICT

    beat: _json_int(ge=0, le=100_000) | None = Field(
        default=None, description="beat index (0-based); all"
    )


class RerollBody(BaseModel):
    model_config = _STRICT

    seed: _json_int(ge=0, le=limits.MAX_SEED) | None = None
    text: str | None = Field(
        default=None, min_length=1, max_length=4000, description="new text for the beat"
    )


class RetryBody(BaseModel):
    model_config = _STRICT

    beat: _json_int(ge=0, le=100_000) | None = Field(
        default=None,
        description="beat index (0-based, as in the detail); absent: every failed beat",
    )


class DeadLetterIds(BaseModel):
    model_config = _STRICT

    job_ids: list[str] = Field(
        min_length=1, max_length=10_000, description="job ids, or `ref`s of entries without one"
    )


class EveryDeadLetter(BaseModel):
    model_config = _STRICT

    all: Literal[True] = Field(description="every dead letter")


DeadLetterSelection = DeadLetterIds | EveryDeadLetter


def _chosen(body: DeadLetterIds | EveryDeadLetter) -> list[str] | None:
    """The ids to act on, or None for every dead letter."""
    return body.job_ids if isinstance(body, DeadLetterIds) else None


class ErrorBody(BaseModel):
    """Every error: a message in words, never a secret."""

    error: str


class NotReadyBody(ErrorBody):
    ready: bool
    checks: dict[str, str]


_WHEN = {
    401: "API_TOKEN is set and the request lacks the right bearer token",
    403: "the API is read-only and the request would change something",
    404: "no such episode, beat or dead letter (or its file is missing from the store)",
    409: "not possible in the current state (nothing to retry, not composed yet, no clip "
    "yet), or an Idempotency-Key reused with another body",
    413: "the request body is larger than the API accepts",
    422: "invalid request: wrong types, out-of-range values, a script that cannot be planned",
    502: "the artifact store refused an operation",
    503: "Redis or the database is unreachable; try again",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries of the error statuses a route can answer, with their body."""
    return {c: {"model": ErrorBody, "description": _WHEN[c]} for c in codes}


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
            services.check_storage(self.rt)
            self.passed_at = time.monotonic()


def _readiness(rt: Runtime, store_check: _StoreCheck) -> tuple[dict[str, str], str | None]:
    checks: dict[str, str] = {}
    problem = None
    for name, check in (
        ("redis", lambda: services.check_redis(rt)),
        ("database", lambda: services.check_database(rt)),
        ("storage", store_check.run),
    ):
        try:
            check()
            checks[name] = "ok"
        except Unavailable as e:
            checks[name] = redact(str(e))
            problem = problem or checks[name]
    return checks, problem


class BodyLimit:
    """413 for a request body over `max_bytes`, declared (Content-Length) or streamed,
    before the body reaches the JSON parser."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(413, f"the request body is larger than {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except _TooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Any) -> None:
        body = json.dumps(
            {"error": f"the request body is larger than {self.max_bytes} bytes"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(StarletteHTTPException):
    """Raised while the body streams in; FastAPI lets HTTP exceptions through to the error
    handlers (any other exception reading a body would become a 400)."""


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
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/readyz", tags=["health"], responses={503: {"model": NotReadyBody}})
    def readyz() -> JSONResponse:
        checks, problem = _readiness(rt, store_check)
        if problem:
            return _error(503, problem, ready=False, checks=checks)
        return JSONResponse({"ready": True, "checks": checks})

    for client in (rt.clients.fast, rt.clients.blocking):
        metrics.count_commands(client)

    @app.get(
        "/metrics",
        tags=["health"],
        dependencies=[Depends(authorize)],
        response_model=None,
        responses={
            200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"},
            **_errors(401, 503),
        },
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.render(rt), media_type=CONTENT_TYPE_LATEST)

    v1 = APIRouter(
        prefix="/v1", dependencies=[Depends(authorize)], responses=_errors(401, 422, 503)
    )
    change = [Depends(writable)]
    _episode_routes(v1, rt, change)
    _artifact_routes(v1, rt)
    _queue_routes(v1, rt, change)
    app.include_router(v1)
    _exact_integer_bounds(app)
    return app


def _methods_of(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "\0"})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", ()) or ())
    return methods


def _exact_integer_bounds(app: FastAPI) -> None:
    """FastAPI's OpenAPI models hold bounds as floats, and 2^63-1 (the largest seed) is no
    float: the schema would say 9.223372036854776e18, which is 2^63. Write the bounds of
    integer fields back as the exact integers pydantic gives."""
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = make()
        models = {m.__name__: m for m in (EpisodeCreate, RetryBody, ApproveBody, RerollBody)}
        for name, model in models.items():
            exact = model.model_json_schema()["properties"]
            shown = spec["components"]["schemas"].get(name, {}).get("properties", {})
            for field, schema in shown.items():
                options = schema.get("anyOf", [schema])
                truths = exact[field].get("anyOf", [exact[field]])
                for option, true in zip(options, truths, strict=False):
                    for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                        if bound in true:
                            option[bound] = true[bound]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        resp = _error(exc.status_code, exc.message)
        if exc.status_code == 401:
            resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    @app.exception_handler(EngineError)
    async def engine_error(_req: Request, exc: EngineError) -> JSONResponse:
        return _error(http_status(exc), str(exc))  # the one mapping (engine.errors)

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": not JSON, not UTF-8
            return _error(422, "the request body is not valid JSON (UTF-8)")
        resp = _error(exc.status_code, str(exc.detail))
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path; a path
            # served by several routes (GET and POST /v1/episodes) allows all of theirs.
            resp.headers["Allow"] = ", ".join(sorted(_methods_of(_req)))
            return resp
        resp.headers.update(exc.headers or {})
        return resp

    async def dependency_error(_req: Request, exc: Exception) -> JSONResponse:
        err = translate(exc)  # Redis and storage failures: the same vocabulary
        return _error(http_status(err) if err else 500, str(err or "internal error"))

    for cls in DEPENDENCY_ERRORS:
        app.add_exception_handler(cls, dependency_error)  # type: ignore[arg-type]

    @app.exception_handler(SQLAlchemyError)
    async def db_error(_req: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %s", redact((str(exc).splitlines() or ["?"])[0]))
        return _error(503, "the database is unavailable; try again")

    @app.exception_handler(Exception)
    async def unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", redact(repr(exc)), exc_info=exc)
        return _error(500, "internal error; see the server log")


def _episode_routes(r: APIRouter, rt: Runtime, change: list[Any]) -> None:
    @r.post(
        "/episodes",
        status_code=201,
        dependencies=change,
        tags=["episodes"],
        responses={
            200: {"description": "a replay: the episode an earlier request with this "
                  "Idempotency-Key created"},
            **_errors(403, 409, 413),
        },
    )  # fmt: skip
    def create_episode(
        body: EpisodeCreate,
        response: Response,
        # `str` with a None default: the schema says "an optional string", not "string or null"
        # (a header has no null).
        idempotency_key: Annotated[
            str,  # noqa: RUF013
            Header(
                min_length=1,
                max_length=idempotency.MAX_KEY_CHARS,
                pattern=r"^[\x21-\x7e]+$",
                description="retry-safe creation: the same key and body return the same "
                "episode; the same key with another body is a 409",
            ),
        ] = None,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        def create() -> dict[str, Any]:
            plan = _plan(rt, body)
            try:
                cast = load_cast(body.cast) if body.cast else None
                size = services.parse_size(body.size) if body.size else None
                return services.create_episode(
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

        if idempotency_key is None:
            detail = create()
        else:
            digest = idempotency.body_hash(body.model_dump())
            try:
                detail, replayed = idempotency.create_once(
                    rt, idempotency_key, digest, create, lambda i: services.episode_detail(rt, i)
                )
            except idempotency.KeyConflict as e:
                raise ApiError(409, str(e)) from None
            if replayed:
                response.status_code = 200
                response.headers["Idempotent-Replayed"] = "true"
        response.headers["Location"] = f"/v1/episodes/{detail['id']}"
        return detail

    @r.post("/episodes/plan", tags=["episodes"], responses=_errors(413))
    def plan_episode(body: ScriptBody) -> dict[str, Any]:
        return _plan_dict(_plan(rt, body))

    @r.get("/episodes", tags=["episodes"])
    def list_episodes(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        return services.list_episodes(rt, limit)

    @r.get("/episodes/{episode_id}", tags=["episodes"], responses=_errors(404))
    def episode_detail(episode_id: str) -> dict[str, Any]:
        return services.episode_detail(rt, episode_id)

    @r.post(
        "/episodes/{episode_id}/retry",
        dependencies=change,
        tags=["episodes"],
        responses=_errors(403, 404, 409, 413),
    )
    def retry_episode(episode_id: str, body: RetryBody | None = None) -> dict[str, Any]:
        beat = body.beat if body else None
        if beat is not None:
            # The episode exists (else 404) but has no such beat: the body conflicts with
            # the episode as it is, so 409, like the other refusals of a retry.
            total = services.episode_detail(rt, episode_id)["beats_total"]
            if beat >= total:
                raise ApiError(
                    409, f"episode {episode_id} has beats 0 to {total - 1}; there is no beat {beat}"
                )
        return _state_change(lambda: services.retry_episode(rt, episode_id, beat))

    @r.post(
        "/episodes/{episode_id}/approve",
        dependencies=change,
        tags=["episodes"],
        responses=_errors(403, 404, 409, 413),
    )
    def approve_episode(episode_id: str, body: ApproveBody | None = None) -> dict[str, Any]:
        beat = body.beat + 1 if body and body.beat is not None else None
        return _state_change(lambda: services.approve_episode(rt, episode_id, beat))

    @r.post(
        "/episodes/{episode_id}/beats/{n}/reroll",
        dependencies=change,
        tags=["episodes"],
        responses=_errors(403, 404, 409, 413),
    )
    def reroll_beat(episode_id: str, n: int, body: RerollBody | None = None) -> dict[str, Any]:
        body = body or RerollBody()
        return _state_change(
            lambda: services.reroll_beat(rt, episode_id, n + 1, seed=body.seed, text=body.text)
        )

    @r.post(
        "/episodes/{episode_id}/cancel",
        dependencies=change,
        tags=["episodes"],
        responses=_errors(403, 404, 409),
    )
    def cancel_episode(episode_id: str) -> dict[str, Any]:
        return _state_change(lambda: services.cancel_episode(rt, episode_id))


def _state_change(action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return action()
    except ConfigError as e:
        raise ApiError(409, str(e)) from None


def _artifact_responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": "the file (local artifact folder)", "content": {media_type: {}}},
        307: {"description": "a redirect to a presigned or public URL (S3, R2)"},
        **_errors(404, 409, 502),
    }


def _artifact_routes(r: APIRouter, rt: Runtime) -> None:
    def deliver(key: str, filename: str) -> Response:
        local = services.artifact_file(rt, key)
        if local is not None:
            path, content_type = local
            return FileResponse(
                path,
                media_type=content_type,
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

    @r.get(
        "/episodes/{episode_id}/video",
        tags=["artifacts"],
        response_model=None,
        responses=_artifact_responses("video/mp4"),
    )
    def episode_video(episode_id: str) -> Response:
        d = services.episode_detail(rt, episode_id)
        if not d["output_key"]:
            # The episode exists; its video does not yet: 409 (try again later), where 404
            # would say there is no such thing.
            raise ApiError(409, f"episode {d['id']} is not composed yet ({d['state']})")
        return deliver(d["output_key"], f"{d['id']}.mp4")

    @r.get(
        "/episodes/{episode_id}/beats/{n}/clip",
        tags=["artifacts"],
        response_model=None,
        responses=_artifact_responses("video/mp4"),
    )
    def beat_clip(episode_id: str, n: int) -> Response:
        d = services.episode_detail(rt, episode_id)
        beat = beat_of(d, n)
        if not beat["clip_key"]:
            raise ApiError(409, f"beat {n} of episode {d['id']} has no clip yet ({beat['state']})")
        return deliver(beat["clip_key"], f"{d['id']}-beat{n:03d}.mp4")

    @r.get(
        "/episodes/{episode_id}/beats/{n}/keyframe",
        tags=["artifacts"],
        response_model=None,
        responses=_artifact_responses("image/png"),
    )
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
            raise ApiError(409, f"beat {n} of episode {d['id']} has no keyframe yet")
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

    @r.post(
        "/queue/dead/requeue",
        dependencies=change,
        tags=["queue"],
        responses=_errors(403, 404, 413),
    )
    def requeue_dead(body: DeadLetterSelection) -> dict[str, Any]:
        chosen = _chosen(body)
        return matched(services.requeue_dead(rt, chosen), chosen)

    @r.post(
        "/queue/dead/drop", dependencies=change, tags=["queue"], responses=_errors(403, 404, 413)
    )
    def drop_dead(body: DeadLetterSelection) -> dict[str, Any]:
        chosen = _chosen(body)
        return matched(services.drop_dead(rt, chosen), chosen)

    @r.post("/queue/pause", dependencies=change, tags=["queue"], responses=_errors(403))
    def pause() -> dict[str, Any]:
        services.set_paused(rt, True)
        return {"paused": True}

    @r.post("/queue/resume", dependencies=change, tags=["queue"], responses=_errors(403))
    def resume() -> dict[str, Any]:
        services.set_paused(rt, False)
        return {"paused": False}

    @r.get("/webhooks/deliveries", tags=["queue"])
    def webhook_deliveries(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:
        """The newest webhook deliveries (the endpoint's host only, never its URL)."""
        return webhooks.deliveries(rt, limit)

    @r.get("/workers", tags=["queue"])
    def workers() -> list[dict[str, Any]]:
        return [_worker_row(w) for w in services.workers(rt)]
