"""What the modern video backends (Wan, LTX-Video) share: one model folder that renders
text to video, image to video from a keyframe, and (where the checkpoint can) a clip
between a first and a last frame; and the film inputs a job carries.

Film inputs travel in the job's `spec` as store keys, never bytes:
`spec.conditioning_key` (the keyframe the clip starts from), `options.last_frame_key`
(the frame the clip must end on), `options.reference_keys` (the characters' reference
images), `options.candidates` (keyframes to draw), `options.prompt` (the assembled
prompt: the beat, its characters' descriptions and the style's look).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from storyworld.capabilities import CAPABILITIES, Capability
from storyworld.config import Settings
from storyworld.protocol import RenderSpec
from storyworld.worker.backends.animatediff import prompt_for
from storyworld.worker.backends.base import (
    BackendUnavailable,
    PermanentRenderError,
    RenderBackend,
    RenderContext,
    RenderOutput,
    TransientRenderError,
)
from storyworld.worker.backends.diffusion import (
    PIPELINES,
    Placement,
    choose_placement,
    diffusion_missing,
    free_accelerator_memory,
    load_pretrained,
    make_generator,
    model_problem,
    pick_seed,
    place_pipeline,
    quiet_progress_bars,
    run_releasing_on_oom,
    step_callback,
    versions,
    video_frame_count,
)

log = logging.getLogger(__name__)

__all__ = [
    "VideoDiffusionBackend",
    "fetch_image",
    "last_frame_key",
    "reference_keys",
    "wanted_candidates",
]


def reference_keys(spec: RenderSpec) -> list[str]:
    """The store keys of the reference images a job carries."""
    keys = spec.options.get("reference_keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise PermanentRenderError("job option reference_keys must be a list of store keys")
    return keys


def last_frame_key(spec: RenderSpec) -> str | None:
    """The store key of the frame a clip must end on, if any."""
    key = spec.options.get("last_frame_key")
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise PermanentRenderError("job option last_frame_key must be a store key")
    return key


def wanted_candidates(spec: RenderSpec) -> int:
    """How many keyframes to draw for a keyframe job (1-8)."""
    value = spec.options.get("candidates", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
        raise PermanentRenderError("job option candidates must be a whole number from 1 to 8")
    return value


def fetch_image(ctx: RenderContext, key: str, name: str) -> Image.Image:
    """A stored image (keyframe, reference), as RGB. A missing object may be a store
    that is briefly away (transient); one that is not an image never will be (permanent)."""
    if ctx.fetch_artifact is None:
        raise PermanentRenderError(f"the job names {name} {key!r} but this worker has no store")
    dest = ctx.workdir / f"{name}-{Path(key).name}"
    try:
        path = ctx.fetch_artifact(key, dest)
    except FileNotFoundError:
        raise PermanentRenderError(f"{name} {key!r} is not in the store") from None
    except Exception as e:
        raise TransientRenderError(f"cannot fetch {name} {key!r}: {e}") from None
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise PermanentRenderError(f"{name} {key!r} is not an image: {e}") from None


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)


class VideoDiffusionBackend(RenderBackend):
    """A video model folder loaded once as a text-to-video pipeline; the image-to-video
    and first-and-last-frame pipelines share its components (`from_pipe`), so one set of
    weights sits in memory whatever the job asks."""

    needs_gpu = True
    #: The setting that names the model folder or Hugging Face id.
    setting = "?"
    default_steps = 30
    default_guidance = 5.0
    max_sequence_length = 256

    def __init__(self, settings: Settings, placement: Placement | None = None) -> None:
        super().__init__(settings)
        missing = diffusion_missing()
        if missing:
            raise BackendUnavailable(f"backend {self.name!r} {missing}")
        self.placement = placement or choose_placement()
        self.model = self.model_value(settings)
        self.offload = settings.gpu_offload
        where = (self.placement.device, self.placement.dtype_name, self.offload)
        self._key = (self.name, self.model, *where)

    # -------------------------------------------------------------- to override
    @classmethod
    @abstractmethod
    def model_value(cls, settings: Settings) -> str:
        """The configured model (folder or id)."""

    @abstractmethod
    def _pipeline_classes(self) -> tuple[Any, Any, Any | None]:
        """(text-to-video, image-to-video, first-and-last-frame or None) classes."""

    @abstractmethod
    def _size_multiple(self, pipe: Any) -> int: ...

    @abstractmethod
    def _frame_multiple(self, pipe: Any) -> int: ...

    def _loaded_capability(self, pipe: Any) -> Capability:
        return CAPABILITIES[self.name]

    def _image_kwargs(
        self, pipe: Any, first: Image.Image, last: Image.Image | None, frames: int
    ) -> tuple[str, dict[str, Any]]:
        """(pipeline role, call kwargs) for a clip from `first` (and ending on `last`)."""
        if last is not None:
            return "flf", {"image": first, "last_image": last}
        return "i2v", {"image": first}

    # ------------------------------------------------------------------ loading
    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        return diffusion_missing() or model_problem(cls.setting, cls.model_value(settings))

    def _load(self) -> Any:
        t2v_cls, _, _ = self._pipeline_classes()
        log.info(
            "loading %s %s, %s on %s (offload %s)",
            self.name,
            self.model,
            self.placement.dtype_name,
            self.placement.device,
            self.offload,
        )
        pipe = load_pretrained(t2v_cls, self.setting, self.model, self.placement)
        place_pipeline(pipe, self.placement, self.offload)
        quiet_progress_bars(pipe)
        return pipe

    def _role_pipe(self, pipe: Any, role: str) -> Any:
        """The pipeline for `role` (t2v, i2v, flf) over the loaded components."""
        t2v_cls, i2v_cls, flf_cls = self._pipeline_classes()
        cls = {"t2v": t2v_cls, "i2v": i2v_cls, "flf": flf_cls or i2v_cls}[role]
        if isinstance(pipe, cls):
            return pipe
        cache = pipe.__dict__.setdefault("_storyworld_roles", {})
        if role not in cache:
            derived = cls.from_pipe(pipe)
            quiet_progress_bars(derived)
            cache[role] = derived
        return cache[role]

    def warm_up(self) -> None:
        run_releasing_on_oom(
            lambda: PIPELINES.get(self._key, self._load), self.release, f"loading {self.name}"
        )

    def release(self) -> None:
        PIPELINES.drop(self._key)
        free_accelerator_memory()

    def capabilities(self) -> Capability:
        """What the loaded model can do (loads it)."""
        with PIPELINES.use(self._key, self._load) as pipe:
            return self._loaded_capability(pipe)

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "offload": self.offload,
            "loaded": PIPELINES.is_loaded(self._key),
        }

    # ---------------------------------------------------------------- rendering
    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        ctx.check_cancelled()
        steps = spec.steps or self.default_steps
        guidance = spec.guidance if spec.guidance is not None else self.default_guidance
        seed = pick_seed(spec.seed)
        prompt = prompt_for(spec)
        first_key = spec.conditioning_key
        last_key = last_frame_key(spec)
        first = fetch_image(ctx, first_key, "keyframe") if first_key else None
        last = fetch_image(ctx, last_key, "last frame") if last_key else None
        if last is not None and first is None:
            raise PermanentRenderError("a last frame was given without a first frame")

        def work() -> dict[str, Any]:
            with PIPELINES.use(self._key, self._load) as pipe:
                cap = self._loaded_capability(pipe)
                multiple = self._size_multiple(pipe)
                width = max(multiple, spec.width // multiple * multiple)
                height = max(multiple, spec.height // multiple * multiple)
                frames = video_frame_count(
                    spec.frame_count, self._frame_multiple(pipe), cap.max_frames
                )
                kwargs: dict[str, Any] = {}
                role = "t2v"
                if first is not None:
                    if not cap.i2v:
                        raise PermanentRenderError(
                            f"{self.setting} '{self.model}' cannot animate a keyframe "
                            "(a text-to-video checkpoint)"
                        )
                    use_last = last if cap.first_last_frame else None
                    role, kwargs = self._image_kwargs(
                        pipe,
                        _fit(first, width, height),
                        _fit(use_last, width, height) if use_last is not None else None,
                        frames,
                    )
                elif not cap.t2v:
                    raise PermanentRenderError(
                        f"{self.setting} '{self.model}' needs a keyframe to start from"
                    )
                runner = self._role_pipe(pipe, role)
                ctx.check_cancelled()
                result = runner(
                    prompt=prompt,
                    negative_prompt=spec.negative_prompt or None,
                    num_frames=frames,
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=make_generator(seed),
                    callback_on_step_end=step_callback(ctx, steps),
                    output_type="pil",
                    max_sequence_length=self.max_sequence_length,
                    **kwargs,
                )
                return {
                    "frames": list(result.frames[0]),
                    "role": role,
                    "num_frames": frames,
                    "width": width,
                    "height": height,
                    "last_frame_used": role == "flf",
                }

        done = run_releasing_on_oom(
            work, self.release, f"rendering {spec.frame_count} frames at {spec.width}x{spec.height}"
        )
        ctx.progress(steps, steps)
        frames = done.pop("frames")
        # The clip spans the beat: frames rendered for a model-friendly count are
        # resampled to the beat's count by the worker.
        fps = max(1, round(len(frames) / spec.duration_s))
        conditioning: dict[str, Any] = {"kind": "text"}
        if first_key:
            conditioning = {"kind": "keyframe", "key": first_key}
            if last_key:
                conditioning["last_frame_key"] = last_key
        return RenderOutput(
            fps=fps,
            frames=frames,
            keyframe=first.resize(frames[0].size) if first is not None else frames[0],
            model_info={
                "backend": self.name,
                "model": self.model,
                "prompt": prompt,
                "negative_prompt": spec.negative_prompt,
                "seed": seed,
                "steps": steps,
                "guidance": guidance,
                "fps": spec.fps,
                "conditioning": conditioning,
                "reference_keys": reference_keys(spec),
                "device": self.placement.device,
                "dtype": self.placement.dtype_name,
                "offload": self.offload,
                **done,
                **versions(),
            },
        )
