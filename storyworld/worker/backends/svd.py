"""Stable Video Diffusion: image to video.

The conditioning image is, in order of preference: a keyframe from the store named by the
job (`spec.conditioning_key`: one stored earlier, or one given with the beat); a keyframe
drawn by a text-to-image pipeline (`KEYFRAME_MODEL`, SDXL by default) when
`USE_DIFFUSION=true`; otherwise the animatic's keyframe for the beat.

SVD makes as many frames as it was trained for at most (14 for SVD, 25 for SVD-XT; the job
option `max_frames` raises that); the clip's fps is set so that those frames span the
beat, and the worker resamples them to the beat's frame count. `decode_chunk_size`,
`motion_bucket_id`, `noise_aug_strength`, `fps`, `min_guidance_scale` and
`max_guidance_scale` can be given in the job's options.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from storyworld.config import Settings
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
    job_option,
    load_pretrained,
    make_generator,
    model_problem,
    pick_seed,
    quiet_progress_bars,
    run_releasing_on_oom,
    snap_size,
    step_callback,
    versions,
)

log = logging.getLogger(__name__)

__all__ = ["SVDBackend"]

# What Stability's SVD examples use; all can be overridden per job through `options`.
DEFAULT_MOTION_BUCKET_ID = 127
DEFAULT_NOISE_AUG_STRENGTH = 0.02
DEFAULT_DECODE_CHUNK_SIZE = 8
DEFAULT_MIN_GUIDANCE = 1.0
DEFAULT_MAX_GUIDANCE = 3.0


def _native_size(pipe: Any, width: int, height: int) -> tuple[int, int]:
    """The clip's aspect ratio at the text-to-image model's trained pixel count (SDXL draws
    badly far from 1024x1024); the keyframe is fitted to the clip afterwards."""
    try:
        native = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
    except (AttributeError, TypeError, ValueError):
        return snap_size(width, height)
    scale = native / (width * height) ** 0.5
    return snap_size(round(width * scale), round(height * scale), 8)


class SVDBackend(RenderBackend):
    """StableVideoDiffusionPipeline, loaded once per process and kept warm."""

    name = "svd"
    needs_gpu = True
    default_steps = 25
    keyframe_steps = 30
    keyframe_guidance = 5.0

    def __init__(self, settings: Settings, placement: Placement | None = None) -> None:
        super().__init__(settings)
        missing = diffusion_missing()
        if missing:
            raise BackendUnavailable(f"backend 'svd' {missing}")
        # `placement` is for benchmarks and tests; the worker lets the machine decide.
        self.placement = placement or choose_placement()
        self.model = settings.svd_model
        self.keyframe_model = settings.keyframe_model if settings.use_diffusion else ""
        where = (self.placement.device, self.placement.dtype_name)
        self._key = ("svd", self.model, *where)
        self._keyframe_key = ("keyframe", self.keyframe_model, *where)

    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        reason = diffusion_missing() or model_problem("SVD_MODEL", settings.svd_model)
        if reason is None and settings.use_diffusion:
            reason = model_problem("KEYFRAME_MODEL", settings.keyframe_model)
        return reason

    # ------------------------------------------------------------------ loading
    def _load(self) -> Any:
        from diffusers import StableVideoDiffusionPipeline

        log.info(
            "loading SVD %s, %s on %s",
            self.model,
            self.placement.dtype_name,
            self.placement.device,
        )
        pipe = load_pretrained(
            StableVideoDiffusionPipeline, "SVD_MODEL", self.model, self.placement
        )
        pipe.to(self.placement.device)
        quiet_progress_bars(pipe)
        return pipe

    def _load_keyframe_pipeline(self) -> Any:
        from diffusers import AutoPipelineForText2Image

        log.info("loading keyframe model %s", self.keyframe_model)
        pipe = load_pretrained(
            AutoPipelineForText2Image, "KEYFRAME_MODEL", self.keyframe_model, self.placement
        )
        pipe.to(self.placement.device)
        quiet_progress_bars(pipe)
        return pipe

    def warm_up(self) -> None:
        def load() -> None:
            PIPELINES.get(self._key, self._load)
            if self.keyframe_model:
                PIPELINES.get(self._keyframe_key, self._load_keyframe_pipeline)

        run_releasing_on_oom(load, self.release, "loading SVD")

    def release(self) -> None:
        PIPELINES.drop(self._key)
        PIPELINES.drop(self._keyframe_key)
        free_accelerator_memory()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "model": self.model,
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "loaded": PIPELINES.is_loaded(self._key),
        }
        if self.keyframe_model:
            info["keyframe_model"] = self.keyframe_model
        return info

    # ---------------------------------------------------------------- rendering
    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        ctx.check_cancelled()
        steps = spec.steps or self.default_steps
        seed = pick_seed(spec.seed)
        width, height = snap_size(spec.width, spec.height)
        motion_bucket_id = job_option(spec, "motion_bucket_id", DEFAULT_MOTION_BUCKET_ID, int)
        noise_aug = job_option(spec, "noise_aug_strength", DEFAULT_NOISE_AUG_STRENGTH, float)
        min_guidance = job_option(spec, "min_guidance_scale", DEFAULT_MIN_GUIDANCE, float)
        default_max = spec.guidance if spec.guidance is not None else DEFAULT_MAX_GUIDANCE
        max_guidance = job_option(spec, "max_guidance_scale", default_max, float)
        drawn_keyframe = spec.conditioning_key is None and bool(self.keyframe_model)
        keyframe_steps = job_option(spec, "keyframe_steps", self.keyframe_steps, int)
        total = steps + (keyframe_steps if drawn_keyframe else 0)

        def work() -> dict[str, Any]:
            image, source = self._conditioning(ctx, width, height, seed, keyframe_steps, total)
            ctx.check_cancelled()
            with PIPELINES.use(self._key, self._load) as pipe:
                trained = int(getattr(pipe.unet.config, "num_frames", 25) or 25)
                cap = job_option(spec, "max_frames", trained, int)
                num_frames = max(2, min(spec.frame_count, cap))
                clip_fps = max(1, round(num_frames / spec.duration_s))
                fps = job_option(spec, "fps", clip_fps, int)
                chunk = job_option(spec, "decode_chunk_size", DEFAULT_DECODE_CHUNK_SIZE, int)
                result = pipe(
                    image,
                    height=height,
                    width=width,
                    num_frames=num_frames,
                    num_inference_steps=steps,
                    min_guidance_scale=min_guidance,
                    max_guidance_scale=max_guidance,
                    fps=fps,
                    motion_bucket_id=motion_bucket_id,
                    noise_aug_strength=noise_aug,
                    decode_chunk_size=max(1, min(chunk, num_frames)),
                    generator=make_generator(seed),
                    callback_on_step_end=step_callback(
                        ctx, steps, offset=total - steps, total=total
                    ),
                    output_type="pil",
                )
                return {
                    "frames": list(result.frames[0]),
                    "image": image,
                    "source": source,
                    "num_frames": num_frames,
                    "clip_fps": clip_fps,
                    "fps": fps,
                    "decode_chunk_size": chunk,
                }

        done = run_releasing_on_oom(work, self.release, f"rendering SVD frames at {width}x{height}")
        ctx.progress(total, total)
        return RenderOutput(
            fps=done["clip_fps"],
            frames=done["frames"],
            keyframe=done["image"],
            model_info={
                "backend": self.name,
                "model": self.model,
                "conditioning": done["source"],
                "seed": seed,
                "steps": steps,
                "num_frames": done["num_frames"],
                "width": width,
                "height": height,
                "fps": done["fps"],
                "motion_bucket_id": motion_bucket_id,
                "noise_aug_strength": noise_aug,
                "decode_chunk_size": done["decode_chunk_size"],
                "min_guidance_scale": min_guidance,
                "max_guidance_scale": max_guidance,
                "device": self.placement.device,
                "dtype": self.placement.dtype_name,
                **versions(),
            },
        )

    def _conditioning(
        self,
        ctx: RenderContext,
        width: int,
        height: int,
        seed: int,
        keyframe_steps: int,
        total: int,
    ) -> tuple[Image.Image, dict[str, Any]]:
        """The image SVD animates, fitted to the clip's size, and where it came from."""
        spec = ctx.job.spec
        if spec.conditioning_key:
            image = self._fetch_keyframe(ctx, spec.conditioning_key)
            source: dict[str, Any] = {"kind": "stored", "key": spec.conditioning_key}
        elif self.keyframe_model:
            image = self._draw_with_diffusion(ctx, width, height, seed, keyframe_steps, total)
            source = {
                "kind": "diffusion",
                "model": self.keyframe_model,
                "prompt": prompt_for(spec),
                "negative_prompt": spec.negative_prompt,
                "steps": keyframe_steps,
                "guidance": self.keyframe_guidance,
                "seed": seed,
            }
        else:
            from storyworld.worker.backends.animatic import draw_keyframe

            image = draw_keyframe(spec)
            source = {"kind": "animatic"}
        fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        return fitted, source

    def _fetch_keyframe(self, ctx: RenderContext, key: str) -> Image.Image:
        if ctx.fetch_artifact is None:
            raise PermanentRenderError(f"conditioning keyframe {key!r}: no store to fetch from")
        dest = ctx.workdir / ("conditioning" + (Path(key).suffix or ".png"))
        try:
            path = ctx.fetch_artifact(key, dest)
        except (FileNotFoundError, KeyError):
            raise PermanentRenderError(
                f"conditioning keyframe {key!r} is not in the store"
            ) from None
        except Exception as e:
            # A storage error says itself whether a retry may help.
            if getattr(e, "transient", True):
                raise TransientRenderError(
                    f"fetching conditioning keyframe {key!r} failed: {e}"
                ) from None
            raise PermanentRenderError(
                f"conditioning keyframe {key!r} cannot be fetched: {e}"
            ) from None
        try:
            with Image.open(path) as img:
                img.load()
                return img.copy()
        except (UnidentifiedImageError, OSError) as e:
            raise PermanentRenderError(
                f"conditioning keyframe {key!r} is not a readable image: {e}"
            ) from None

    def _draw_with_diffusion(
        self,
        ctx: RenderContext,
        width: int,
        height: int,
        seed: int,
        steps: int,
        total: int,
    ) -> Image.Image:
        spec = ctx.job.spec
        with PIPELINES.use(self._keyframe_key, self._load_keyframe_pipeline) as pipe:
            kf_width, kf_height = _native_size(pipe, width, height)
            result = pipe(
                prompt=prompt_for(spec),
                negative_prompt=spec.negative_prompt or None,
                width=kf_width,
                height=kf_height,
                num_inference_steps=steps,
                guidance_scale=self.keyframe_guidance,
                generator=make_generator(seed),
                callback_on_step_end=step_callback(ctx, steps, total=total),
                output_type="pil",
            )
            return result.images[0]
