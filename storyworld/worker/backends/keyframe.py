"""Keyframes: text to image with SDXL (`KEYFRAME_MODEL`), conditioned on the beat's
characters' reference images through an IP-Adapter (`IP_ADAPTER_MODEL`, loaded with
diffusers' `load_ip_adapter`), bf16 on CUDA.

`IP_ADAPTER_MODEL` is a folder or Hugging Face id in the layout of `h94/IP-Adapter`:
`sdxl_models/ip-adapter_sdxl.safetensors` and `sdxl_models/image_encoder/`. Set it to an
empty value to draw keyframes from text alone.

A job may ask for K candidates (`options.candidates`): K images from consecutive seeds,
each scored by the cosine similarity of its image embedding (the IP-Adapter's CLIP image
encoder) to the references' embeddings (the mean over references); the best is the
keyframe. Without references there is nothing to compare with: the first is kept and the
score is None.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from storyworld.config import Settings
from storyworld.worker.backends.animatediff import prompt_for
from storyworld.worker.backends.base import (
    BackendUnavailable,
    PermanentRenderError,
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
    load_pretrained,
    make_generator,
    model_problem,
    pick_seed,
    place_pipeline,
    quiet_progress_bars,
    run_releasing_on_oom,
    snap_size,
    step_callback,
    versions,
)
from storyworld.worker.backends.video import fetch_image, reference_keys, wanted_candidates

log = logging.getLogger(__name__)

__all__ = ["IP_ADAPTER_SUBFOLDER", "IP_ADAPTER_WEIGHTS", "KeyframeBackend", "cosine"]

IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_WEIGHTS = "ip-adapter_sdxl.safetensors"


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two 1-D tensors."""
    import torch

    return float(torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=0))


class KeyframeBackend(RenderBackend):
    """SDXL + IP-Adapter, loaded once per process and kept warm."""

    name = "keyframe"
    needs_gpu = True
    default_steps = 30
    default_guidance = 5.0

    def __init__(self, settings: Settings, placement: Placement | None = None) -> None:
        super().__init__(settings)
        missing = diffusion_missing()
        if missing:
            raise BackendUnavailable(f"backend 'keyframe' {missing}")
        self.placement = placement or choose_placement()
        self.model = settings.keyframe_model
        self.ip_adapter = settings.ip_adapter_model.strip()
        self.scale = settings.ip_adapter_scale
        self.offload = settings.gpu_offload
        where = (self.placement.device, self.placement.dtype_name, self.offload)
        self._key = ("keyframe-ip", self.model, self.ip_adapter, *where)

    @classmethod
    def availability(cls, settings: Settings) -> str | None:
        reason = diffusion_missing() or model_problem("KEYFRAME_MODEL", settings.keyframe_model)
        adapter = settings.ip_adapter_model.strip()
        if reason is None and adapter and Path(adapter).expanduser().is_dir():
            weights = Path(adapter).expanduser() / IP_ADAPTER_SUBFOLDER / IP_ADAPTER_WEIGHTS
            if not weights.is_file():
                reason = (
                    f"IP_ADAPTER_MODEL '{adapter}' lacks "
                    f"{IP_ADAPTER_SUBFOLDER}/{IP_ADAPTER_WEIGHTS}"
                )
        return reason

    # ------------------------------------------------------------------ loading
    def _load(self) -> Any:
        from diffusers import AutoPipelineForText2Image

        log.info("loading keyframe model %s", self.model)
        pipe = load_pretrained(
            AutoPipelineForText2Image, "KEYFRAME_MODEL", self.model, self.placement
        )
        place_pipeline(pipe, self.placement, self.offload)
        quiet_progress_bars(pipe)
        return pipe

    def _ensure_adapter(self, pipe: Any) -> None:
        """Load the IP-Adapter into the warm pipeline the first time a beat has references.

        A beat without references (an SVD clip's keyframe, a scene with nobody in it) needs
        no adapter, so a deployment without IP_ADAPTER_MODEL weights still draws keyframes.
        """
        if getattr(pipe, "image_encoder", None) is not None:
            return
        if not self.ip_adapter:
            raise PermanentRenderError(
                "this beat has reference images but IP_ADAPTER_MODEL is empty: set it to a "
                "folder or Hugging Face id in the layout of h94/IP-Adapter"
            )
        from storyworld.worker.backends.diffusion import ModelMissing

        local = Path(self.ip_adapter).expanduser()
        source = str(local) if local.is_dir() else self.ip_adapter
        log.info("loading IP-Adapter %s", self.ip_adapter)
        try:
            pipe.load_ip_adapter(
                source,
                subfolder=IP_ADAPTER_SUBFOLDER,
                weight_name=IP_ADAPTER_WEIGHTS,
                local_files_only=local.is_dir() or None,
            )
        except (OSError, ValueError, KeyError) as e:
            raise ModelMissing(
                f"cannot load IP_ADAPTER_MODEL '{self.ip_adapter}': {str(e).splitlines()[0]}"
            ) from None
        pipe.image_encoder.to(self.placement.dtype)
        # Offload hooks are set per component: place again so the encoder gets its own.
        place_pipeline(pipe, self.placement, self.offload)

    def warm_up(self) -> None:
        run_releasing_on_oom(
            lambda: PIPELINES.get(self._key, self._load), self.release, "loading the keyframe model"
        )

    def release(self) -> None:
        PIPELINES.drop(self._key)
        free_accelerator_memory()

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ip_adapter": self.ip_adapter,
            "device": self.placement.device,
            "dtype": self.placement.dtype_name,
            "loaded": PIPELINES.is_loaded(self._key),
        }

    # ---------------------------------------------------------------- rendering
    def _embed(self, pipe: Any, images: list[Image.Image]) -> Any:
        """Normalised CLIP image embeddings (one row per image) from the IP-Adapter's
        image encoder."""
        import torch

        with torch.no_grad():
            pixels = pipe.feature_extractor(images, return_tensors="pt").pixel_values
            encoder = pipe.image_encoder
            pixels = pixels.to(device=encoder.device, dtype=encoder.dtype)
            return encoder(pixels).image_embeds.float().cpu()

    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        ctx.check_cancelled()
        steps = spec.steps or self.default_steps
        guidance = spec.guidance if spec.guidance is not None else self.default_guidance
        seed = pick_seed(spec.seed)
        count = wanted_candidates(spec)
        keys = reference_keys(spec)
        refs = [fetch_image(ctx, key, "reference") for key in keys]
        width, height = snap_size(spec.width, spec.height)
        prompt = prompt_for(spec)
        total = steps * count

        def work() -> dict[str, Any]:
            import torch

            with PIPELINES.use(self._key, self._load) as pipe:
                extra: dict[str, Any] = {}
                ref_embeds = None
                if refs:
                    self._ensure_adapter(pipe)
                if getattr(pipe, "image_encoder", None) is not None:
                    if refs:
                        pipe.set_ip_adapter_scale(self.scale)
                        extra["ip_adapter_image"] = [refs]
                        ref_embeds = self._embed(pipe, refs)
                    else:
                        # The adapter is loaded into the UNet: it needs embeddings even
                        # when the beat has no one to look like. Zeros at scale 0.
                        pipe.set_ip_adapter_scale(0.0)
                        dim = int(pipe.image_encoder.config.projection_dim)
                        zeros = torch.zeros(2 if guidance > 1 else 1, 1, dim)
                        extra["ip_adapter_image_embeds"] = [
                            zeros.to(pipe.device, dtype=pipe.unet.dtype)
                        ]
                images: list[Image.Image] = []
                for i in range(count):
                    ctx.check_cancelled()
                    result = pipe(
                        prompt=prompt,
                        negative_prompt=spec.negative_prompt or None,
                        width=width,
                        height=height,
                        num_inference_steps=steps,
                        guidance_scale=guidance,
                        generator=make_generator(seed + i),
                        callback_on_step_end=step_callback(
                            ctx, steps, offset=steps * i, total=total
                        ),
                        output_type="pil",
                        **extra,
                    )
                    images.append(result.images[0].convert("RGB"))
                scores: list[float | None] = [None] * count
                if ref_embeds is not None:
                    embeds = self._embed(pipe, images)
                    target = ref_embeds.mean(dim=0)
                    scores = [cosine(row, target) for row in embeds]
                return {"images": images, "scores": scores}

        done = run_releasing_on_oom(
            work, self.release, f"drawing {count} keyframe(s) at {width}x{height}"
        )
        ctx.progress(total, total)
        images, scores = done["images"], done["scores"]
        best = 0
        if scores[0] is not None:
            best = max(range(count), key=lambda i: scores[i])  # type: ignore[arg-type, return-value]
        keyframe = images[best].resize((spec.width, spec.height), Image.Resampling.LANCZOS)
        return RenderOutput(
            fps=spec.fps,
            frames=[keyframe],
            keyframe=keyframe,
            model_info={
                "backend": self.name,
                "model": self.model,
                "ip_adapter": self.ip_adapter,
                "ip_adapter_scale": self.scale if refs else 0.0,
                "prompt": prompt,
                "negative_prompt": spec.negative_prompt,
                "seed": seed + best,
                "steps": steps,
                "guidance": guidance,
                "width": width,
                "height": height,
                "reference_keys": keys,
                "candidates": [{"seed": seed + i, "score": scores[i]} for i in range(count)],
                "chosen": best,
                "score": scores[best],
                "device": self.placement.device,
                "dtype": self.placement.dtype_name,
                **versions(),
            },
        )
