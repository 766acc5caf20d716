"""Wan 2.1 / 2.2 through diffusers: `WanPipeline` (text to video) and
`WanImageToVideoPipeline` (from a keyframe; `last_image` for first-and-last-frame).

`WAN_MODEL` is a Hugging Face id or a local folder, e.g. `Wan-AI/Wan2.2-TI2V-5B-Diffusers`
(one model for text and image to video), `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (text only)
or `Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers` (from a keyframe, first-and-last frame).
What the loaded checkpoint can do is read from its config, so a job it cannot do fails at
once with a message (permanent) instead of rendering nonsense.
"""

from __future__ import annotations

from typing import Any

from storyworld.capabilities import CAPABILITIES, Capability
from storyworld.config import Settings
from storyworld.worker.backends.video import VideoDiffusionBackend

__all__ = ["WanBackend"]


class WanBackend(VideoDiffusionBackend):
    name = "wan"
    setting = "WAN_MODEL"
    default_steps = 30
    default_guidance = 5.0
    max_sequence_length = 256

    @classmethod
    def model_value(cls, settings: Settings) -> str:
        return settings.wan_model

    def _pipeline_classes(self) -> tuple[Any, Any, Any | None]:
        from diffusers import WanImageToVideoPipeline, WanPipeline

        return WanPipeline, WanImageToVideoPipeline, WanImageToVideoPipeline

    def _load(self) -> Any:
        # The checkpoint's own pipeline class (T2V, I2V or TI2V) decides what it can do.
        from diffusers import DiffusionPipeline

        from storyworld.worker.backends.diffusion import (
            load_pretrained,
            place_pipeline,
            quiet_progress_bars,
        )

        pipe = load_pretrained(DiffusionPipeline, self.setting, self.model, self.placement)
        place_pipeline(pipe, self.placement, self.offload)
        quiet_progress_bars(pipe)
        return pipe

    def _size_multiple(self, pipe: Any) -> int:
        transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        return int(pipe.vae_scale_factor_spatial) * int(transformer.config.patch_size[1])

    def _frame_multiple(self, pipe: Any) -> int:
        return int(pipe.vae_scale_factor_temporal)

    def _loaded_capability(self, pipe: Any) -> Capability:
        declared = CAPABILITIES[self.name]
        transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        in_channels = int(transformer.config.in_channels)
        out_channels = int(transformer.config.out_channels)
        if bool(pipe.config.get("expand_timesteps", False)):
            # Wan 2.2 TI2V: the keyframe replaces the first latent frame; no last frame.
            return declared.narrowed(first_last_frame=False)
        if in_channels == out_channels:
            return declared.narrowed(i2v=False, first_last_frame=False)  # text to video only
        # Image to video. The last frame needs FLF2V's positions for two images' CLIP
        # tokens (Wan 2.1 FLF2V), or no image encoder at all (Wan 2.2 A14B I2V).
        config = transformer.config
        flf = config.get("image_dim") is None or config.get("pos_embed_seq_len") is not None
        return declared.narrowed(t2v=False, first_last_frame=flf, max_frames=81)

    def _image_kwargs(self, pipe: Any, first: Any, last: Any, frames: int) -> tuple[str, dict]:
        kwargs: dict[str, Any] = {"image": first}
        if last is not None:
            kwargs["last_image"] = last
            return "flf", kwargs
        return "i2v", kwargs
