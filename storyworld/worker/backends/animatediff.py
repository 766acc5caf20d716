"""AnimateDiff: text to video with a motion adapter on a Stable Diffusion 1.5 base.

Settings: `ANIMATEDIFF_BASE_MODEL` and `ANIMATEDIFF_MOTION_ADAPTER`, each a Hugging Face id
or a local folder. The scheduler is DDIM with the settings the diffusers documentation
recommends for AnimateDiff (linear betas, no sample clipping, linspace timesteps). Frames,
fps, size, steps, guidance, negative prompt and seed come from the job; a clip longer than
the motion module's window is rendered with FreeNoise's sliding context.
"""

from __future__ import annotations

import logging
from typing import Any

from storyworld.config import Settings
from storyworld.protocol import RenderSpec
from storyworld.worker.backends.base import (
    BackendUnavailable,
    RenderBackend,
    RenderContext,
    RenderOutput,
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

__all__ = ["AnimateDiffBackend", "prompt_for"]

#: What the diffusers AnimateDiff documentation recommends on top of the base's scheduler.
SCHEDULER_OVERRIDES: dict[str, Any] = {
    "clip_sample": False,
    "timestep_spacing": "linspace",
    "beta_schedule": "linear",
    "steps_offset": 1,
}


def prompt_for(spec: RenderSpec) -> str:
    """The text prompt of a beat: its scene, then what happens (or `options.prompt`)."""
    override = spec.options.get("prompt")
    if isinstance(override, str) and override.strip():
        return override.strip()
    return ", ".join(part.strip() for part in (spec.scene, spec.text) if part.strip())


class AnimateDiffBackend(RenderBackend):
    """AnimateDiffPipeline + MotionAdapter, loaded once per process and kept warm."""

    name = "animatediff"
    needs_gpu = True
    default_steps = 25
    default_guidance = 7.5
    #: FreeNoise window (frames) for clips longer than the motion module's length.
    context_length = 16
    context_stride = 4

    def __init__(self, settings: Settings, placement: Placement | None = None) -> None:
        super().__init__(settings)
        missing = diffusion_missing()
        if missing:
            raise BackendUnavailable(f"backend 'animatediff' {missing}")
        # `placement` is for benchmarks and tests; the worker lets the machine decide.
        self.placement = placement or choose_placement()
        self.base_model = settings.animatediff_base_model
        self.motion_adapter = settings.animatediff_motion_adapter
        self._key = (
            "animatediff",
            self.base_model,
            self.motion_adapter,
            self.placement.device,
            self.placement.dtype_name,
        )

    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        return (
            diffusion_missing()
            or model_problem("ANIMATEDIFF_BASE_MODEL", settings.animatediff_base_model)
            or model_problem(
                "ANIMATEDIFF_MOTION_ADAPTER", settings.animatediff_motion_adapter, "config.json"
            )
        )

    def _load(self) -> Any:
        from diffusers import AnimateDiffPipeline, DDIMScheduler, MotionAdapter

        log.info(
            "loading AnimateDiff: base %s, motion adapter %s, %s on %s",
            self.base_model,
            self.motion_adapter,
            self.placement.dtype_name,
            self.placement.device,
        )
        adapter = load_pretrained(
            MotionAdapter, "ANIMATEDIFF_MOTION_ADAPTER", self.motion_adapter, self.placement
        )
        pipe = load_pretrained(
            AnimateDiffPipeline,
            "ANIMATEDIFF_BASE_MODEL",
            self.base_model,
            self.placement,
            motion_adapter=adapter,
        )
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **SCHEDULER_OVERRIDES)
        pipe.to(self.placement.device)
        quiet_progress_bars(pipe)
        return pipe

    def warm_up(self) -> None:
        run_releasing_on_oom(
            lambda: PIPELINES.get(self._key, self._load), self.release, "loading AnimateDiff"
        )

    def release(self) -> None:
        PIPELINES.drop(self._key)
        free_accelerator_memory()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.base_model,
            "motion_adapter": self.motion_adapter,
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "loaded": PIPELINES.is_loaded(self._key),
        }

    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        ctx.check_cancelled()
        steps = spec.steps or self.default_steps
        guidance = spec.guidance if spec.guidance is not None else self.default_guidance
        seed = pick_seed(spec.seed)
        width, height = snap_size(spec.width, spec.height)
        num_frames = spec.frame_count
        prompt = prompt_for(spec)
        decode_chunk = job_option(spec, "decode_chunk_size", 16, int)

        def work() -> tuple[list[Any], bool]:
            with PIPELINES.use(self._key, self._load) as pipe:
                free_noise = self._fit_context(pipe, num_frames)
                ctx.check_cancelled()
                result = pipe(
                    prompt=prompt,
                    negative_prompt=spec.negative_prompt or None,
                    num_frames=num_frames,
                    height=height,
                    width=width,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=make_generator(seed),
                    decode_chunk_size=max(1, decode_chunk),
                    callback_on_step_end=step_callback(ctx, steps),
                    output_type="pil",
                )
                return list(result.frames[0]), free_noise

        frames, free_noise = run_releasing_on_oom(
            work, self.release, f"rendering {num_frames} frames at {width}x{height}"
        )
        ctx.progress(steps, steps)
        return RenderOutput(
            fps=spec.fps,
            frames=frames,
            keyframe=frames[0] if frames else None,
            model_info={
                "backend": self.name,
                "model": self.base_model,
                "motion_adapter": self.motion_adapter,
                "scheduler": "DDIMScheduler "
                + ", ".join(f"{k}={v}" for k, v in SCHEDULER_OVERRIDES.items()),
                "prompt": prompt,
                "negative_prompt": spec.negative_prompt,
                "seed": seed,
                "steps": steps,
                "guidance": guidance,
                "num_frames": num_frames,
                "width": width,
                "height": height,
                "fps": spec.fps,
                "free_noise": free_noise,
                "device": self.placement.device,
                "dtype": self.placement.dtype_name,
                **versions(),
            },
        )

    def _fit_context(self, pipe: Any, num_frames: int) -> bool:
        """Turn FreeNoise on when the clip is longer than the motion module can see at
        once (its positional embeddings), off otherwise. Returns whether it is on."""
        max_len = int(getattr(pipe.unet.config, "motion_max_seq_length", 32) or 32)
        if num_frames <= max_len:
            if getattr(pipe, "free_noise_enabled", False):
                pipe.disable_free_noise()
            return False
        window = min(self.context_length, max_len)
        pipe.enable_free_noise(
            context_length=window, context_stride=min(self.context_stride, window)
        )
        return True
