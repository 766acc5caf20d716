"""LTX-Video through diffusers: `LTXPipeline` (text to video), `LTXImageToVideoPipeline`
(from a keyframe) and `LTXConditionPipeline` (a first and a last frame as conditions).

`LTX_MODEL` is a Hugging Face id or a local folder (e.g. `Lightricks/LTX-Video`). Frame
counts are `8k + 1` and sides multiples of the VAE's compression; the worker renders the
nearest and conforms the clip to the beat.
"""

from __future__ import annotations

from typing import Any

from storyworld.config import Settings
from storyworld.worker.backends.video import VideoDiffusionBackend

__all__ = ["LTXBackend"]


class LTXBackend(VideoDiffusionBackend):
    name = "ltx"
    setting = "LTX_MODEL"
    default_steps = 40
    default_guidance = 3.0
    max_sequence_length = 128

    @classmethod
    def model_value(cls, settings: Settings) -> str:
        return settings.ltx_model

    def _pipeline_classes(self) -> tuple[Any, Any, Any | None]:
        from diffusers import LTXConditionPipeline, LTXImageToVideoPipeline, LTXPipeline

        return LTXPipeline, LTXImageToVideoPipeline, LTXConditionPipeline

    def _size_multiple(self, pipe: Any) -> int:
        return int(pipe.vae_spatial_compression_ratio) * int(pipe.transformer_spatial_patch_size)

    def _frame_multiple(self, pipe: Any) -> int:
        return int(pipe.vae_temporal_compression_ratio) * int(pipe.transformer_temporal_patch_size)

    def _image_kwargs(self, pipe: Any, first: Any, last: Any, frames: int) -> tuple[str, dict]:
        if last is None:
            return "i2v", {"image": first}
        from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXVideoCondition

        return "flf", {
            "conditions": [
                LTXVideoCondition(image=first, frame_index=0),
                LTXVideoCondition(image=last, frame_index=frames - 1),
            ]
        }
