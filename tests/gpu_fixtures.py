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


# ------------------------------------------------------------------ film models (wave 2)
def write_tiny_t5_tokenizer(folder: Path) -> Path:
    """A T5 tokenizer built offline: a Unigram model over letters, digits, punctuation and
    a few words (with and without the word-start marker), wrapped in T5TokenizerFast."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    for ch in string.ascii_letters + string.digits + string.punctuation:
        vocab += [("\u2581" + ch, -2.0), (ch, -3.0)]
    vocab += [(f"\u2581{w}", -1.0) for w in ("the", "a", "and", "of", "sea", "light")]
    vocab.append(("\u2581", -4.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=128,
    ).save_pretrained(folder)
    return folder


def _tiny_t5_encoder(vocab_size: int, d_model: int = 32, umt5: bool = False) -> Any:
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    return model_cls(
        config_cls(
            vocab_size=vocab_size,
            d_model=d_model,
            d_kv=8,
            d_ff=37,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def build_tiny_wan(folder: Path, tokenizer_dir: Path) -> Path:
    """A Wan 2.2 TI2V-shaped pipeline folder (WanPipeline with `expand_timesteps`: one
    model for text-to-video and image-to-video), with tiny random weights and a UMT5
    text encoder, as Wan ships."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3,
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
        temperal_downsample=[False, True, True],
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=48,
        out_channels=48,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=_tiny_t5_encoder(len(tokenizer), umt5=True),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_ltx(folder: Path, tokenizer_dir: Path) -> Path:
    """An LTX-Video pipeline folder (LTXPipeline) with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=1,
        caption_channels=32,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=_tiny_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=transformer,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sdxl(folder: Path, tokenizer_dir: Path) -> Path:
    """A Stable Diffusion XL pipeline folder (two CLIP text encoders, the second with a
    projection) with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 * 8 + 32
        cross_attention_dim=64,
        norm_num_groups=1,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=128,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=1000,
        hidden_act="gelu",
        projection_dim=32,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.save_pretrained(folder)
    return folder


def build_tiny_ip_adapter(folder: Path, sdxl: Path) -> Path:
    """An IP-Adapter folder in the layout `load_ip_adapter` reads: `sdxl_models/` with the
    projection and cross-attention weights (`ip-adapter_sdxl.safetensors`, keys
    `image_proj.*` and `ip_adapter.N.to_k_ip/to_v_ip.weight`) and `sdxl_models/image_encoder`
    (a CLIPVisionModelWithProjection)."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    models = folder / "sdxl_models"
    torch.manual_seed(0)
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
    image_encoder.save_pretrained(models / "image_encoder")
    unet = UNet2DConditionModel.from_pretrained(sdxl / "unet")
    cross = int(unet.config.cross_attention_dim)
    embed = int(image_encoder.config.projection_dim)
    torch.manual_seed(0)
    tensors: dict[str, Any] = {
        "image_proj.proj.weight": torch.randn(4 * cross, embed) * 0.02,
        "image_proj.proj.bias": torch.zeros(4 * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = unet.config.block_out_channels[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(unet.config.block_out_channels))[int(name[len("up_blocks.")])]
        else:
            hidden = unet.config.block_out_channels[int(name[len("down_blocks.")])]
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.02
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.02
        key_id += 2
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, models / "ip-adapter_sdxl.safetensors"
    )
    return folder


@pytest.fixture(scope="session")
def tiny_film_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny film models: wan (TI2V), ltx, sdxl, ip_adapter. Built once per
    test session."""
    _require_diffusers()
    root = tmp_path_factory.mktemp("tiny-film-models")
    t5 = write_tiny_t5_tokenizer(root / "t5-tokenizer")
    clip = write_tiny_clip_vocab(root / "clip-vocab")
    sdxl = build_tiny_sdxl(root / "sdxl", clip)
    return {
        "wan": build_tiny_wan(root / "wan", t5),
        "ltx": build_tiny_ltx(root / "ltx", t5),
        "sdxl": sdxl,
        "ip_adapter": build_tiny_ip_adapter(root / "ip-adapter", sdxl),
    }


@pytest.fixture(scope="session")
def tiny_film_env(tiny_film_models: dict[str, Path]) -> dict[str, str]:
    """Environment settings that point the film backends at the tiny models."""
    return {
        "WAN_MODEL": str(tiny_film_models["wan"]),
        "LTX_MODEL": str(tiny_film_models["ltx"]),
        "KEYFRAME_MODEL": str(tiny_film_models["sdxl"]),
        "IP_ADAPTER_MODEL": str(tiny_film_models["ip_adapter"]),
    }


def build_tiny_wan_flf(folder: Path, tokenizer_dir: Path) -> Path:
    """A Wan 2.1 I2V / FLF2V-shaped pipeline folder (WanImageToVideoPipeline: a 36-channel
    transformer that takes the first and last frames, and a CLIP image encoder)."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )  # fmt: skip
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36,
        out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
        image_dim=4, pos_embed_seq_len=2 * (32 * 32 + 1),  # both frames' CLIP tokens
    )  # fmt: skip
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=_tiny_t5_encoder(len(tokenizer), umt5=True),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        image_encoder=image_encoder,
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
    )
    pipe.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_wan_flf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Wan 2.1 FLF2V-shaped model folder (image to video, first and last frame)."""
    _require_diffusers()
    root = tmp_path_factory.mktemp("tiny-wan-flf")
    return build_tiny_wan_flf(root / "wan-flf", write_tiny_t5_tokenizer(root / "t5-tokenizer"))
