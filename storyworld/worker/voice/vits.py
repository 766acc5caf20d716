"""A neural voice: a transformers VITS/MMS model (`VitsModel`) from a local directory.

Loaded offline (`local_files_only`), once per process per model directory, on the CPU or
the worker's GPU. Needs the `gpu` extra (torch, transformers).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from storyworld.voices import VoiceSpec

__all__ = ["synthesize_vits"]


@lru_cache(maxsize=2)
def _load(model_dir: str) -> tuple[Any, Any, str]:
    try:
        import torch
        from transformers import AutoTokenizer, VitsModel
    except ImportError:
        from storyworld.worker.voice.stage import VoiceStageError

        raise VoiceStageError(
            "the vits: voice needs torch and transformers (pip install 'storyworld[gpu]')"
        ) from None
    try:
        model = VitsModel.from_pretrained(model_dir, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except OSError as e:
        from storyworld.worker.voice.stage import VoiceStageError

        raise VoiceStageError(f"cannot load the VITS voice at {model_dir}: {e}") from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return model.to(device).eval(), tokenizer, device


def synthesize_vits(text: str, voice: VoiceSpec) -> tuple[np.ndarray, int]:
    """Mono float32 samples and their rate. Seeded, so a line sounds the same each time
    (VITS samples its durations and noise)."""
    import torch

    model, tokenizer, device = _load(voice.model)
    inputs = tokenizer(text, return_tensors="pt").to(device)
    if inputs["input_ids"].shape[-1] == 0:
        return np.zeros(0, np.float32), int(model.config.sampling_rate)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            wave = model(**inputs).waveform[0]
    finally:
        torch.random.set_rng_state(generator_state)
    return wave.float().cpu().numpy(), int(model.config.sampling_rate)
