"""Veo: Google's video generation through the Gemini API, over httpx.

One long-running operation per beat: start it (`POST {VEO_API_BASE}/models/{VEO_MODEL}:
predictLongRunning`), poll it (`GET {VEO_API_BASE}/{operation name}`) with backoff until it
is done or `VEO_DEADLINE_SECONDS` pass, then download the video. The worker conforms the
MP4 to the beat's size, fps and frame count and stores it like any clip.

`GEMINI_API_KEY` travels only in the `x-goog-api-key` header, and only to the API's own
origin (never to a host a download redirects to); it never appears in a URL, log line or
error. `VEO_MODEL` is configuration because Google retires models often; `VEO_API_BASE`
lets another endpoint (or a test server) stand in.

Errors are classified: 429 / RESOURCE_EXHAUSTED (quota, rate limit), 5xx, network errors
and a missed deadline are transient; a quota error may also name `VEO_FALLBACK_BACKEND`.
A retired or unknown model (404), a rejected request or key, and a video held back by the
safety filter are permanent, with the API's reason in the beat's error.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from storyworld.config import Settings, redact
from storyworld.protocol import RenderSpec
from storyworld.worker.backends.base import (
    PermanentRenderError,
    RenderBackend,
    RenderContext,
    RenderOutput,
    TransientRenderError,
)

log = logging.getLogger(__name__)

__all__ = ["VeoBackend", "allowed_durations", "request_body"]

ASPECT_RATIOS = ("16:9", "9:16")
# google.rpc.Code values an operation can end with that a later attempt may not hit.
_TRANSIENT_RPC_CODES = {4: "DEADLINE_EXCEEDED", 8: "RESOURCE_EXHAUSTED", 10: "ABORTED",
                        13: "INTERNAL", 14: "UNAVAILABLE"}  # fmt: skip
_MAX_REDIRECTS = 5


def allowed_durations(model: str) -> tuple[int, ...]:
    """Clip lengths (seconds) a Veo model accepts: Veo 2 takes 5 to 8, later ones 4, 6, 8."""
    if model.startswith("veo-2"):
        return (5, 6, 7, 8)
    return (4, 6, 8)


def _duration_for(spec: RenderSpec, model: str) -> int:
    wanted = spec.options.get("duration_seconds")
    if wanted is not None:
        try:
            return int(wanted)
        except (TypeError, ValueError):
            raise PermanentRenderError(
                f"job option duration_seconds={wanted!r} is not a whole number"
            ) from None
    allowed = allowed_durations(model)
    # The shortest clip that covers the beat; the worker trims it to the beat's length.
    return next((d for d in allowed if d >= spec.duration_s - 1e-6), allowed[-1])


def _aspect_ratio_for(spec: RenderSpec) -> str:
    wanted = spec.options.get("aspect_ratio")
    if wanted is not None:
        if wanted not in ASPECT_RATIOS:
            raise PermanentRenderError(
                f"job option aspect_ratio={wanted!r}: Veo takes {' or '.join(ASPECT_RATIOS)}"
            )
        return str(wanted)
    return "16:9" if spec.width >= spec.height else "9:16"


def request_body(spec: RenderSpec, model: str, image: bytes | None = None) -> dict[str, Any]:
    """The predictLongRunning request for one beat."""
    prompt = spec.options.get("prompt") or ", ".join(
        part.strip() for part in (spec.scene, spec.text) if part.strip()
    )
    instance: dict[str, Any] = {"prompt": prompt}
    if image is not None:
        instance["image"] = {
            "bytesBase64Encoded": base64.b64encode(image).decode("ascii"),
            "mimeType": "image/png",
        }
    parameters: dict[str, Any] = {
        "aspectRatio": _aspect_ratio_for(spec),
        "durationSeconds": _duration_for(spec, model),
    }
    if spec.negative_prompt:
        parameters["negativePrompt"] = spec.negative_prompt
    if spec.seed is not None and not model.startswith("veo-2"):
        parameters["seed"] = spec.seed % 2**32
    for option, field in (("resolution", "resolution"), ("person_generation", "personGeneration")):
        if spec.options.get(option):
            parameters[field] = spec.options[option]
    return {"instances": [instance], "parameters": parameters}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _api_error(response: httpx.Response) -> tuple[str, str]:
    """(status, message) of a Google API error body, or ('', a short text)."""
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return "", response.text[:300].strip()
    if not isinstance(error, dict):
        return "", str(error)[:300]
    return str(error.get("status") or ""), str(error.get("message") or "").strip()


class VeoBackend(RenderBackend):
    """The Gemini API's Veo models. Needs only network access and `GEMINI_API_KEY`."""

    name = "veo"
    needs_gpu = False
    #: Polling backoff: the first wait, its growth and its ceiling (seconds).
    poll_initial_s = 5.0
    poll_factor = 1.5
    poll_max_s = 30.0
    #: One HTTP request's timeout (seconds).
    request_timeout_s = 60.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.model = settings.veo_model.strip()
        self.api_base = settings.veo_api_base.rstrip("/")
        self.deadline_s = settings.veo_deadline_s
        self.fallback = settings.veo_fallback_backend.strip() or None
        self._key = settings.gemini_api_key.get()

    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        if not settings.gemini_api_key:
            return "GEMINI_API_KEY is not set"
        if not settings.veo_model.strip():
            return "VEO_MODEL is not set"
        if not settings.veo_api_base.startswith(("http://", "https://")):
            return f"VEO_API_BASE must be an http(s) URL, not {settings.veo_api_base!r}"
        return None

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "api_base": self.api_base}

    # ----------------------------------------------------------------- render
    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        ctx.check_cancelled()
        image = self._conditioning_image(ctx)
        body = request_body(spec, self.model, image)
        started = time.monotonic()
        with httpx.Client(timeout=self.request_timeout_s, follow_redirects=False) as client:
            operation = self._start(client, body)
            log.info("veo operation %s started for job %s", operation, ctx.job.job_id)
            done = self._wait(client, operation, ctx, started)
            video = self._save_video(client, done, operation, ctx.workdir / "veo.mp4")
        ctx.progress(self._progress_total, self._progress_total)
        parameters = body["parameters"]
        return RenderOutput(
            fps=spec.fps,
            video_path=video,
            model_info={
                "backend": self.name,
                "model": self.model,
                "operation": operation,
                "prompt": body["instances"][0]["prompt"],
                "negative_prompt": spec.negative_prompt,
                "seed": parameters.get("seed"),
                "duration_seconds": parameters["durationSeconds"],
                "aspect_ratio": parameters["aspectRatio"],
                "conditioning": spec.conditioning_key,
                "seconds": round(time.monotonic() - started, 1),
            },
        )

    @property
    def _progress_total(self) -> int:
        return max(1, int(self.deadline_s))

    # ------------------------------------------------------------------- HTTP
    def _headers(self, url: str) -> dict[str, str]:
        # The key goes to the API's origin only: a download may redirect to storage.
        if self._key and _origin(url) == _origin(self.api_base):
            return {"x-goog-api-key": self._key}
        return {}

    def _scrub(self, text: str) -> str:
        if self._key:
            text = text.replace(self._key, "****")
        return redact(text)

    def _request(
        self, client: httpx.Client, method: str, url: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            return client.request(method, url, headers=self._headers(url), **kwargs)
        except httpx.TransportError as e:
            raise TransientRenderError(
                self._scrub(f"Veo API unreachable ({type(e).__name__}): {e}")
            ) from None

    def _fail(self, response: httpx.Response, what: str, *, model_call: bool = False) -> None:
        """Raise the right error for a failed response."""
        status, message = _api_error(response)
        code = response.status_code
        detail = self._scrub(f"{code} {status}".strip() + (f": {message}" if message else ""))
        if code == 429 or status == "RESOURCE_EXHAUSTED":
            retry_after = response.headers.get("retry-after")
            hint = f" (retry after {retry_after} s)" if retry_after else ""
            raise TransientRenderError(
                f"Veo quota or rate limit reached while {what}{hint}: {detail}",
                fallback_backend=self.fallback,
            )
        if code == 404 and model_call:
            raise PermanentRenderError(
                f"Veo model '{self.model}' is not available (retired or renamed? "
                f"set VEO_MODEL): {detail}",
                fallback_backend=self.fallback,
            )
        if code in (401, 403):
            raise PermanentRenderError(f"the Veo API refused GEMINI_API_KEY: {detail}")
        if code in (408, 409) or code >= 500 or code == 404:
            raise TransientRenderError(f"Veo API error while {what}: {detail}")
        raise PermanentRenderError(f"Veo API rejected the request while {what}: {detail}")

    def _start(self, client: httpx.Client, body: dict[str, Any]) -> str:
        url = f"{self.api_base}/models/{self.model}:predictLongRunning"
        response = self._request(client, "POST", url, json=body)
        if response.status_code != 200:
            self._fail(response, "starting the video", model_call=True)
        try:
            name = response.json()["name"]
        except (ValueError, KeyError, TypeError):
            raise TransientRenderError(
                "Veo API answered the start request without an operation name"
            ) from None
        return str(name)

    def _wait(
        self, client: httpx.Client, operation: str, ctx: RenderContext, started: float
    ) -> dict[str, Any]:
        """Poll until the operation is done; network trouble and 5xx are retried within
        the deadline (the video is being made and paid for already)."""
        url = f"{self.api_base}/{operation.lstrip('/')}"
        delay = self.poll_initial_s
        last_problem = ""
        while True:
            elapsed = time.monotonic() - started
            ctx.progress(min(int(elapsed), self._progress_total - 1), self._progress_total)
            try:
                response = self._request(client, "GET", url)
            except TransientRenderError as e:
                response, last_problem = None, str(e)
            if response is not None:
                if response.status_code == 200:
                    try:
                        state = response.json()
                    except ValueError:
                        state, last_problem = {}, "the operation's status was not JSON"
                    if isinstance(state, dict) and state.get("done"):
                        return state
                elif response.status_code in (429, 500, 502, 503, 504):
                    last_problem = _api_error(response)[1] or str(response.status_code)
                else:
                    self._fail(response, f"polling operation {operation}")
            remaining = self.deadline_s - (time.monotonic() - started)
            if remaining <= 0:
                why = f" (last problem: {self._scrub(last_problem)})" if last_problem else ""
                raise TransientRenderError(
                    f"Veo operation {operation} not done after {self.deadline_s:g} s "
                    f"(VEO_DEADLINE_SECONDS){why}",
                    fallback_backend=self.fallback,
                )
            if ctx.cancel_event.wait(min(delay, remaining)):
                ctx.check_cancelled()
            delay = min(delay * self.poll_factor, self.poll_max_s)

    def _save_video(
        self, client: httpx.Client, state: dict[str, Any], operation: str, dest: Path
    ) -> Path:
        error = state.get("error")
        if error:
            code = int(error.get("code") or 0)
            message = self._scrub(str(error.get("message") or "no message"))
            if code in _TRANSIENT_RPC_CODES:
                raise TransientRenderError(
                    f"Veo operation {operation} failed ({_TRANSIENT_RPC_CODES[code]}): {message}",
                    fallback_backend=self.fallback if code == 8 else None,
                )
            raise PermanentRenderError(f"Veo operation {operation} failed: {message}")
        response = state.get("response") or {}
        # The Gemini API wraps the samples; Vertex AI's shape has them at the top.
        result = response.get("generateVideoResponse") or response
        samples = result.get("generatedSamples") or result.get("videos") or []
        if not samples:
            reasons = [str(r) for r in result.get("raiMediaFilteredReasons") or []]
            filtered = int(result.get("raiMediaFilteredCount") or 0)
            if reasons or filtered:
                why = "; ".join(reasons) or "no reason given"
                raise PermanentRenderError(f"Veo's safety filter held the video back: {why}")
            raise PermanentRenderError(f"Veo operation {operation} finished without a video")
        video = samples[0].get("video", samples[0])
        inline = video.get("encodedVideo") or video.get("bytesBase64Encoded")
        if inline:
            dest.write_bytes(base64.b64decode(inline))
        elif video.get("uri"):
            self._download(client, str(video["uri"]), dest)
        else:
            raise PermanentRenderError(f"Veo operation {operation} returned a video without data")
        if dest.stat().st_size == 0:
            raise TransientRenderError(f"Veo operation {operation}: the video downloaded empty")
        return dest

    def _download(self, client: httpx.Client, uri: str, dest: Path) -> None:
        """GET the video, following redirects by hand so the key stays with the API."""
        url = uri
        for _ in range(_MAX_REDIRECTS + 1):
            with client.stream(
                "GET", url, headers=self._headers(url), timeout=self.request_timeout_s
            ) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    response.read()
                    self._fail(response, "downloading the video")
                part = dest.with_name(dest.name + ".part")
                with part.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                part.replace(dest)
                return
        raise TransientRenderError(
            f"downloading the Veo video: more than {_MAX_REDIRECTS} redirects"
        )

    def _conditioning_image(self, ctx: RenderContext) -> bytes | None:
        """A stored keyframe to start the video from (image to video), as PNG bytes."""
        key = ctx.job.spec.conditioning_key
        if not key:
            return None
        if ctx.fetch_artifact is None:
            raise PermanentRenderError(f"conditioning keyframe {key!r}: no store to fetch from")
        try:
            path = ctx.fetch_artifact(key, ctx.workdir / "conditioning.img")
        except (FileNotFoundError, KeyError):
            raise PermanentRenderError(
                f"conditioning keyframe {key!r} is not in the store"
            ) from None
        except Exception as e:
            if getattr(e, "transient", True):
                raise TransientRenderError(f"fetching conditioning keyframe {key!r}: {e}") from None
            raise PermanentRenderError(f"conditioning keyframe {key!r}: {e}") from None
        from io import BytesIO

        from PIL import Image

        with Image.open(path) as img:
            buffer = BytesIO()
            img.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()
