"""The render backend interface.

A backend turns a `RenderSpec` into frames or an MP4 file. The worker owns everything else
(queue, lease, heartbeats, encoding frames, upload, result). Backends raise
`TransientRenderError` (retry may help: OOM, timeout, 429, network) or
`PermanentRenderError` (bad input, model missing); any other exception is treated as
transient by the worker.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from storyworld.config import Settings
from storyworld.protocol import Job

__all__ = [
    "BackendUnavailable",
    "PermanentRenderError",
    "RenderBackend",
    "RenderCancelled",
    "RenderContext",
    "RenderOutput",
    "TransientRenderError",
]


class TransientRenderError(RuntimeError):
    """A failure that a later attempt may not hit (OOM, timeout, 429, network)."""

    def __init__(self, message: str, *, fallback_backend: str | None = None) -> None:
        super().__init__(message)
        self.fallback_backend = fallback_backend


class PermanentRenderError(RuntimeError):
    """A failure that will happen again (bad input, model retired, safety filter)."""

    def __init__(self, message: str, *, fallback_backend: str | None = None) -> None:
        super().__init__(message)
        self.fallback_backend = fallback_backend


class RenderCancelled(RuntimeError):
    """The worker asked the render to stop (shutdown, job cancelled)."""


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (dependency or model missing); says which."""


@dataclass
class RenderContext:
    """What a backend gets besides the job: a scratch dir, progress, cancellation and
    access to stored artifacts (for conditioning images)."""

    job: Job
    workdir: Path
    settings: Settings
    report_progress: Callable[[int, int], None] = lambda step, total: None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    fetch_artifact: Callable[[str, Path], Path] | None = None
    #: The beat's speech from the voice stage (a `BeatSpeech`), when it has dialogue:
    #: backends that draw subtitles time them by its cues.
    speech: Any = None

    def progress(self, step: int, total: int) -> None:
        """Report step i of n; raises RenderCancelled if the job should stop."""
        self.report_progress(step, total)
        if self.cancel_event.is_set():
            raise RenderCancelled("render cancelled")

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise RenderCancelled("render cancelled")


@dataclass
class RenderOutput:
    """Either `frames` (the worker encodes them at `fps`) or an encoded `video_path`.

    `keyframe` is stored as keyframe.png; `model_info` (model, seed, steps, ...) is stored
    with the clip so the beat can be reproduced.
    """

    fps: int
    frames: list[Image.Image] | None = None
    video_path: Path | None = None
    keyframe: Image.Image | None = None
    model_info: dict[str, Any] = field(default_factory=dict)
    #: Nothing to encode or store (the `bench` backend): the job succeeds with no artifact.
    nothing: bool = False


class RenderBackend(ABC):
    """One way of rendering. Instances are created once per worker process and kept warm."""

    #: The name jobs use (`job.backend`).
    name: str = "?"
    #: True when the backend needs a CUDA GPU to be practical.
    needs_gpu: bool = False
    #: True when a worker offers it only if asked for by name (`bench`).
    by_name_only: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        """None if this backend can run here; otherwise the reason it cannot (a missing
        package, model directory or API key). Cheap: no model loading."""
        return None

    def warm_up(self) -> None:
        """Load models ahead of the first job (optional)."""

    @abstractmethod
    def render(self, ctx: RenderContext) -> RenderOutput:
        """Render the job's spec. Call `ctx.progress(i, n)` regularly."""

    def release(self) -> None:
        """Free memory (after an out-of-memory error); the next render reloads."""

    def describe(self) -> dict[str, Any]:
        """Facts for the heartbeat (model ids, device)."""
        return {}
