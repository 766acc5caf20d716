"""Fixtures for the GPU backend tests (tiny pipelines).

No weights can be downloaded here, so these build tiny, randomly initialised components
from configs (the way diffusers' own pipeline tests do), save them with `save_pretrained`
and hand out the folders. The backends then load them through their real loading code.
A CLIP tokenizer is built offline from a small byte-level vocab and merges file.

Every fixture skips its test when torch or diffusers is not installed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from storyworld.config import Settings, load_settings
from storyworld.protocol import Job, RenderSpec

# 64x64 frames and 2 steps keep a render to seconds on one CPU core.
TINY_SIZE = 64


def _require_diffusers() -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_clip_vocab(folder: Path) -> Path:
    """vocab.json and merges.txt for a tiny CLIP tokenizer: every byte, every byte at a
    word's end, and a few merges so that BPE really merges something."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    alphabet = _byte_alphabet()
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    for ch in alphabet:
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = ["a t</w>", "c at</w>", "t h", "th e</w>"]
    for merge in merges:
        vocab.setdefault(merge.replace(" ", ""), len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    return folder


def build_tiny_sd15(folder: Path, tokenizer_dir: Path) -> Path:
    """A Stable Diffusion 1.5-shaped pipeline folder (model_index.json, unet, vae,
    text_encoder, tokenizer, scheduler) with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
        )
    )
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    # SD 1.5 ships a PNDM scheduler; the backend swaps in DDIM as AnimateDiff wants.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_motion_adapter(folder: Path) -> Path:
    """A MotionAdapter folder (config.json + weights) matching the tiny SD 1.5 UNet."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    adapter = MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
    )
    adapter.save_pretrained(folder)
    return folder


def build_tiny_svd(folder: Path) -> Path:
    """A Stable Video Diffusion pipeline folder with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=14,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
    )
    torch.manual_seed(0)
    # The pipeline resizes the conditioning image to 224x224 for CLIP; 32-pixel patches
    # keep that to 49 tokens.
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=224,
            intermediate_size=37,
            patch_size=32,
        )
    )
    feature_extractor = CLIPImageProcessor(crop_size=224, size=224)
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny models: sd15 (also a text-to-image keyframe model),
    motion_adapter, svd. Built once per test session."""
    _require_diffusers()
    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer_dir = write_tiny_clip_vocab(root / "clip-vocab")
    return {
        "sd15": build_tiny_sd15(root / "sd15", tokenizer_dir),
        "motion_adapter": build_tiny_motion_adapter(root / "motion-adapter"),
        "svd": build_tiny_svd(root / "svd"),
    }


@pytest.fixture(scope="session")
def tiny_model_env(tiny_models: dict[str, Path]) -> dict[str, str]:
    """Environment settings that point every diffusion backend at the tiny models."""
    return {
        "ANIMATEDIFF_BASE_MODEL": str(tiny_models["sd15"]),
        "ANIMATEDIFF_MOTION_ADAPTER": str(tiny_models["motion_adapter"]),
        "SVD_MODEL": str(tiny_models["svd"]),
        "KEYFRAME_MODEL": str(tiny_models["sd15"]),
    }


@pytest.fixture
def gpu_settings(tiny_model_env: dict[str, str], tmp_path: Path) -> Callable[..., Settings]:
    """A factory of Settings aimed at the tiny models; keyword env overrides."""

    def make(**env: str) -> Settings:
        return load_settings(
            env={"STORYWORLD_HOME": str(tmp_path / "home"), **tiny_model_env, **env},
            env_file=None,
        )

    return make


@pytest.fixture
def fresh_pipelines() -> Iterator[Any]:
    """The process-wide pipeline cache, emptied before and after the test."""
    _require_diffusers()
    from storyworld.worker.backends.diffusion import PIPELINES

    PIPELINES.clear()
    yield PIPELINES
    PIPELINES.clear()


def make_job(backend: str, **spec: Any) -> Job:
    """A render job for one beat with a small default spec (1 s, 64x64, 8 fps, 2 steps)."""
    fields: dict[str, Any] = {
        "text": "a red fox runs through snow",
        "scene": "a winter forest at dawn",
        "duration_s": 1.0,
        "width": TINY_SIZE,
        "height": TINY_SIZE,
        "fps": 8,
        "steps": 2,
        "seed": 1234,
    }
    fields.update(spec)
    return Job(
        job_id=f"job-{backend}-1",
        episode_id="ep1",
        beat_id="beat1",
        beat_index=0,
        attempt=1,
        backend=backend,
        spec=RenderSpec(**fields),
    )


class ProgressLog:
    """Records progress reports; can cancel the job when a given step is reported."""

    def __init__(self, cancel_event: threading.Event, cancel_at: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self._cancel_event = cancel_event
        self._cancel_at = cancel_at

    def __call__(self, step: int, total: int) -> None:
        self.calls.append((step, total))
        if self._cancel_at is not None and step >= self._cancel_at:
            self._cancel_event.set()


@pytest.fixture
def render_context(tmp_path: Path) -> Callable[..., Any]:
    """A factory: render_context(job, settings, cancel_at=None, artifacts=None) -> a
    RenderContext whose `.progress_log` records the reports. `artifacts` maps store keys
    to local files for `fetch_artifact`."""
    from storyworld.worker.backends.base import RenderContext

    def make(
        job: Job,
        settings: Settings,
        cancel_at: int | None = None,
        artifacts: dict[str, Path] | None = None,
    ) -> RenderContext:
        workdir = tmp_path / f"work-{job.job_id}"
        workdir.mkdir(parents=True, exist_ok=True)
        cancel = threading.Event()
        progress = ProgressLog(cancel, cancel_at)
        stored = dict(artifacts or {})

        def fetch(key: str, dest: Path) -> Path:
            if key not in stored:
                raise FileNotFoundError(f"no artifact {key!r}")
            dest.write_bytes(stored[key].read_bytes())
            return dest

        ctx = RenderContext(
            job=job,
            workdir=workdir,
            settings=settings,
            report_progress=progress,
            cancel_event=cancel,
            fetch_artifact=fetch,
        )
        ctx.progress_log = progress  # type: ignore[attr-defined]
        return ctx

    return make
