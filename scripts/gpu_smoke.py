#!/usr/bin/env python
"""GPU smoke benchmark for the AnimateDiff, SVD, Wan and LTX-Video backends, without
downloading weights.

Builds the pipelines at their real sizes (the Stable Diffusion 1.5 UNet, VAE and CLIP text
encoder with the v1-5-2 motion adapter; the SVD UNet, temporal VAE and CLIP ViT-H image
encoder) with random weights — the same arithmetic as the real models — saves them with
`save_pretrained`, loads them through the backends' own loading code and times:

- a 16-frame 512x512 AnimateDiff clip (25 steps, classifier-free guidance), and
- a 14-frame 1024x576 SVD clip (25 steps),
- a 49-frame 1280x704 Wan 2.2 TI2V-5B clip (the 5B transformer, the Wan 2.2 VAE and a
  UMT5-XXL text encoder; `--only wan`), and
- a 65-frame 768x512 LTX-Video clip (the 2B transformer, its VAE and a T5-XXL text
  encoder; `--only ltx`),

in bf16 (fp16 with `--dtype fp16`), reporting load time, render time, seconds per step
and peak GPU memory. The output is a Markdown table (and JSON with `--json`).

    python scripts/gpu_smoke.py --report bench/results-gpu.md
    python scripts/gpu_smoke.py --device cpu --tiny          # a dry run of the script

`--tiny` swaps in tiny random models (64x64, 2 steps): a check of the script itself that
runs in seconds on a CPU. Needs `pip install 'storyworld[gpu]'`.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


@dataclass
class Figure:
    backend: str
    frames: int
    width: int
    height: int
    steps: int
    load_s: float
    warm_render_s: float
    render_s: float
    s_per_step: float
    peak_allocated_gib: float | None
    peak_reserved_gib: float | None


# ---------------------------------------------------------------- model building
def _byte_alphabet() -> list[str]:
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


def _tokenizer(folder: Path) -> Any:
    """A byte-level CLIP tokenizer built offline. Its ids differ from the real vocab's,
    but it pads to 77 tokens like the real one, so the text encoder does the same work."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in _byte_alphabet():
            vocab.setdefault(ch + suffix, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=77)


def build_sd15(folder: Path, tiny: bool, device: str) -> None:
    """SD 1.5 (UNet 860M, VAE 84M, CLIP ViT-L/14 text 123M) or a tiny stand-in."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            unet = UNet2DConditionModel(
                block_out_channels=(32, 64),
                layers_per_block=2,
                sample_size=32,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=32,
                norm_num_groups=2,
            )
            vae = AutoencoderKL(
                block_out_channels=[32, 64],
                down_block_types=["DownEncoderBlock2D"] * 2,
                up_block_types=["UpDecoderBlock2D"] * 2,
                latent_channels=4,
            )
            text = CLIPTextConfig(
                hidden_size=32, intermediate_size=37, num_attention_heads=4,
                num_hidden_layers=2, vocab_size=1000, bos_token_id=0, eos_token_id=1,
                pad_token_id=1,
            )  # fmt: skip
        else:
            unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)
            vae = AutoencoderKL(
                block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4,
                up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=512,
            )
            text = CLIPTextConfig(
                hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                num_hidden_layers=12, vocab_size=49408, max_position_embeddings=77,
                hidden_act="quick_gelu", projection_dim=768, bos_token_id=0,
                eos_token_id=1, pad_token_id=1,
            )  # fmt: skip
        text_encoder = CLIPTextModel(text)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        skip_prk_steps=True, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=_tokenizer(folder.parent / "clip-vocab"),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    del pipe, unet, vae, text_encoder


def build_motion_adapter(folder: Path, tiny: bool, device: str) -> None:
    """The AnimateDiff v1-5-2 motion adapter (453M) or a tiny stand-in."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            adapter = MotionAdapter(
                block_out_channels=(32, 64),
                motion_layers_per_block=2,
                motion_norm_num_groups=2,
                motion_num_attention_heads=4,
            )
        else:
            adapter = MotionAdapter()  # the defaults are v1-5-2's configuration
    adapter.save_pretrained(folder)


def build_svd(folder: Path, tiny: bool, device: str) -> None:
    """SVD (UNet 1.5B, temporal VAE 98M, CLIP ViT-H/14 image encoder 632M), 14 frames,
    or a tiny stand-in."""
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            unet = UNetSpatioTemporalConditionModel(
                block_out_channels=(32, 64),
                layers_per_block=2,
                sample_size=32,
                down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
                up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
                cross_attention_dim=32,
                num_attention_heads=8,
                projection_class_embeddings_input_dim=96,
                addition_time_embed_dim=32,
                num_frames=14,
            )
            vae = AutoencoderKLTemporalDecoder(
                block_out_channels=[32, 64],
                down_block_types=["DownEncoderBlock2D"] * 2,
                latent_channels=4,
            )
            vision = CLIPVisionConfig(
                hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                image_size=224, intermediate_size=37, patch_size=32,
            )  # fmt: skip
        else:
            unet = UNetSpatioTemporalConditionModel(sample_size=96, num_frames=14)
            vae = AutoencoderKLTemporalDecoder(
                block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4,
                layers_per_block=2,
                latent_channels=4,
                sample_size=768,
            )
            vision = CLIPVisionConfig(
                hidden_size=1280, intermediate_size=5120, num_attention_heads=16,
                num_hidden_layers=32, patch_size=14, image_size=224, projection_dim=1024,
                hidden_act="gelu",
            )  # fmt: skip
        image_encoder = CLIPVisionModelWithProjection(vision)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        interpolation_type="linear", num_train_timesteps=1000, prediction_type="v_prediction",
        sigma_max=700.0, sigma_min=0.002, steps_offset=1, timestep_spacing="leading",
        timestep_type="continuous", use_karras_sigmas=True,
    )  # fmt: skip
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )
    pipe.save_pretrained(folder)
    del pipe, unet, vae, image_encoder


def _t5_tokenizer(folder: Path) -> Path:
    """A T5 tokenizer built offline (a Unigram model over characters and a few words):
    the real models' tokenizers only change which ids a prompt gets, not the arithmetic."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    for ch in string.ascii_letters + string.digits + string.punctuation:
        vocab += [("\u2581" + ch, -2.0), (ch, -3.0)]
    vocab.append(("\u2581", -4.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    T5TokenizerFast(
        tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        extra_ids=0, model_max_length=512,
    ).save_pretrained(folder)  # fmt: skip
    return folder


def _t5_encoder(tiny: bool, umt5: bool, vocab: int) -> Any:
    """T5-XXL (LTX) or UMT5-XXL (Wan) encoder: 24 layers, d_model 4096, 64 heads."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    config_cls, model_cls = (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    if tiny:
        config = config_cls(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
        )  # fmt: skip
    else:
        config = config_cls(
            vocab_size=256384 if umt5 else 32128, d_model=4096, d_kv=64, d_ff=10240,
            num_layers=24, num_heads=64, feed_forward_proj="gated-gelu",
            relative_attention_num_buckets=32, pad_token_id=0, eos_token_id=1,
        )  # fmt: skip
    return model_cls(config)


def _save_half(pipe: Any, folder: Path, tiny: bool) -> None:
    """Save in bf16 at real sizes (a 5B transformer and a 5.7B encoder in float32 would
    need 43 GB of disk)."""
    import torch

    if not tiny:
        for name in ("transformer", "text_encoder", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(torch.bfloat16)
    pipe.save_pretrained(folder)


def build_wan(folder: Path, tiny: bool, device: str) -> None:
    """Wan 2.2 TI2V-5B: transformer (30 layers, 24 heads x 128, ffn 14336, 48 latent
    channels), the Wan 2.2 VAE (16x spatial, 4x temporal, 48 channels) and UMT5-XXL."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        UniPCMultistepScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_t5_tokenizer(folder.parent / "t5-tokenizer"))
    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            transformer = WanTransformer3DModel(
                patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                in_channels=48, out_channels=48, text_dim=32, freq_dim=256, ffn_dim=32,
                num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                rope_max_seq_len=32,
            )  # fmt: skip
            vae = AutoencoderKLWan(
                base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True,
                patch_size=2, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
                dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_spatial=16,
                scale_factor_temporal=4, temperal_downsample=[False, True, True],
            )  # fmt: skip
        else:
            transformer = WanTransformer3DModel(
                patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128,
                in_channels=48, out_channels=48, text_dim=4096, freq_dim=256, ffn_dim=14336,
                num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                eps=1e-6, rope_max_seq_len=1024,
            )  # fmt: skip
            vae = AutoencoderKLWan(
                base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12,
                out_channels=12, is_residual=True, patch_size=2, dim_mult=[1, 2, 4, 4],
                num_res_blocks=2, scale_factor_spatial=16, scale_factor_temporal=4,
                temperal_downsample=[False, True, True], latents_mean=[0.0] * 48,
                latents_std=[1.0] * 48,
            )  # fmt: skip
        text_encoder = _t5_encoder(tiny, umt5=True, vocab=len(tokenizer))
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        ),
        transformer_2=None,
        boundary_ratio=None,
        expand_timesteps=True,
    )
    _save_half(pipe, folder, tiny)
    del pipe, transformer, vae, text_encoder


def build_ltx(folder: Path, tiny: bool, device: str) -> None:
    """LTX-Video 0.9: the 2B transformer (28 layers, 32 heads x 64), its VAE (32x
    spatial, 8x temporal, 128 channels: diffusers' defaults) and T5-XXL."""
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_t5_tokenizer(folder.parent / "t5-tokenizer"))
    torch.manual_seed(0)
    with torch.device(device):
        if tiny:
            transformer = LTXVideoTransformer3DModel(
                in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                num_layers=1, caption_channels=32,
            )  # fmt: skip
            vae = AutoencoderKLLTXVideo(
                in_channels=3, out_channels=3, latent_channels=8,
                block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
                spatio_temporal_scaling=(True, True, False, False),
                decoder_spatio_temporal_scaling=(True, True, False, False),
                decoder_inject_noise=(False, False, False, False, False),
                upsample_residual=(False, False, False, False), upsample_factor=(1, 1, 1, 1),
                timestep_conditioning=False, patch_size=1, patch_size_t=1,
                encoder_causal=True, decoder_causal=False,
            )  # fmt: skip
        else:
            transformer = LTXVideoTransformer3DModel()
            vae = AutoencoderKLLTXVideo()
        text_encoder = _t5_encoder(tiny, umt5=False, vocab=len(tokenizer))
    pipe = LTXPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )
    _save_half(pipe, folder, tiny)
    del pipe, transformer, vae, text_encoder


# --------------------------------------------------------------------- timing
def _context(job: Any, settings: Any, workdir: Path) -> Any:
    from storyworld.worker.backends.base import RenderContext

    workdir.mkdir(parents=True, exist_ok=True)
    return RenderContext(job=job, workdir=workdir, settings=settings)


def _job(backend: str, frames: int, fps: int, width: int, height: int, steps: int) -> Any:
    from storyworld.protocol import Job, RenderSpec

    spec = RenderSpec(
        text="a lighthouse keeper climbs the spiral stairs as a storm rolls in",
        scene="a lighthouse on a cliff at dusk",
        negative_prompt="blurry, low quality",
        duration_s=frames / fps,
        width=width,
        height=height,
        fps=fps,
        steps=steps,
        seed=1,
    )
    return Job(job_id=f"smoke-{backend}", episode_id="smoke", beat_id="b0", beat_index=0,
               attempt=1, backend=backend, spec=spec)  # fmt: skip


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _measure(
    name: str,
    make_backend: Callable[[], Any],
    job: Any,
    settings: Any,
    device: str,
    workdir: Path,
) -> Figure:
    import torch

    cuda = device.startswith("cuda")
    backend = make_backend()
    _sync(device)
    started = time.perf_counter()
    backend.warm_up()
    _sync(device)
    load_s = time.perf_counter() - started

    # The first render pays for kernel selection and allocator growth; the second is
    # what a warm worker sees per job.
    started = time.perf_counter()
    backend.render(_context(job, settings, workdir / f"{name}-warm"))
    _sync(device)
    warm_s = time.perf_counter() - started

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    out = backend.render(_context(job, settings, workdir / name))
    _sync(device)
    render_s = time.perf_counter() - started
    peak_alloc = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    peak_reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None

    frames = len(out.frames or [])
    steps = job.spec.steps
    backend.release()
    del backend, out
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return Figure(
        backend=name,
        frames=frames,
        width=job.spec.width,
        height=job.spec.height,
        steps=steps,
        load_s=round(load_s, 2),
        warm_render_s=round(warm_s, 2),
        render_s=round(render_s, 2),
        s_per_step=round(render_s / steps, 3),
        peak_allocated_gib=None if peak_alloc is None else round(peak_alloc, 2),
        peak_reserved_gib=None if peak_reserved is None else round(peak_reserved, 2),
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import torch

    from storyworld.config import load_settings
    from storyworld.worker.backends.animatediff import AnimateDiffBackend
    from storyworld.worker.backends.diffusion import Placement
    from storyworld.worker.backends.ltx import LTXBackend
    from storyworld.worker.backends.svd import SVDBackend
    from storyworld.worker.backends.wan import WanBackend

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here; use --device cpu --tiny for a dry run")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device == "cpu" and dtype != torch.float32:
        dtype = torch.float32  # CPU kernels for half types are slow or missing
    placement = Placement(device, dtype)
    if args.tiny:
        ad_size, svd_size, steps, ad_frames, svd_frames = (64, 64), (64, 64), 2, 16, 14
    else:
        ad_size, svd_size, steps = (512, 512), (1024, 576), args.steps
        ad_frames, svd_frames = 16, 14
    build_device = device if device.startswith("cuda") else "cpu"

    results: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="sw-gpu-smoke-", dir=args.workdir) as tmp:
        root = Path(tmp)
        settings = load_settings(
            env={
                "STORYWORLD_HOME": str(root / "home"),
                "ANIMATEDIFF_BASE_MODEL": str(root / "sd15"),
                "ANIMATEDIFF_MOTION_ADAPTER": str(root / "motion-adapter"),
                "SVD_MODEL": str(root / "svd"),
                "WAN_MODEL": str(root / "wan"),
                "LTX_MODEL": str(root / "ltx"),
            },
            env_file=None,
        )
        if "animatediff" in args.only:
            t = time.perf_counter()
            build_sd15(root / "sd15", args.tiny, build_device)
            build_motion_adapter(root / "motion-adapter", args.tiny, build_device)
            _free(build_device)
            print(f"built SD 1.5 + motion adapter in {time.perf_counter() - t:.1f} s", flush=True)
            job = _job("animatediff", ad_frames, 8, *ad_size, steps)
            results.append(
                _measure(
                    "animatediff",
                    lambda: AnimateDiffBackend(settings, placement=placement),
                    job,
                    settings,
                    device,
                    root / "work",
                )
            )
            print(json.dumps(asdict(results[-1])), flush=True)
        if "svd" in args.only:
            t = time.perf_counter()
            build_svd(root / "svd", args.tiny, build_device)
            _free(build_device)
            print(f"built SVD in {time.perf_counter() - t:.1f} s", flush=True)
            job = _job("svd", svd_frames, 7, *svd_size, steps)
            results.append(
                _measure(
                    "svd",
                    lambda: SVDBackend(settings, placement=placement),
                    job,
                    settings,
                    device,
                    root / "work",
                )
            )
            print(json.dumps(asdict(results[-1])), flush=True)
        video_models = (
            ("wan", build_wan, WanBackend, (1280, 704), 49, 24),
            ("ltx", build_ltx, LTXBackend, (768, 512), 65, 24),
        )
        for name, build, backend_cls, size, frames, fps in video_models:
            if name not in args.only:
                continue
            t = time.perf_counter()
            build(root / name, args.tiny, build_device)
            _free(build_device)
            print(f"built {name} in {time.perf_counter() - t:.1f} s", flush=True)
            if args.tiny:
                size, frames = (64, 64), 9
            job = _job(name, frames, fps, *size, steps)
            results.append(
                _measure(
                    name,
                    lambda cls=backend_cls: cls(settings, placement=placement),
                    job,
                    settings,
                    device,
                    root / "work",
                )
            )
            print(json.dumps(asdict(results[-1])), flush=True)
            shutil.rmtree(root / name, ignore_errors=True)  # the next model needs the disk

    card = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor()
    return {
        "card": card or "cpu",
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "tiny": args.tiny,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "results": [asdict(r) for r in results],
    }


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def markdown(report: dict[str, Any]) -> str:
    """The figures as a Markdown section for BENCHMARKS.md / bench/results-gpu.md."""
    kind = "tiny random models (dry run)" if report["tiny"] else "real-size random weights"
    lines = [
        f"## GPU smoke: {report['card']} ({report['date']})",
        "",
        f"{kind}, {report['dtype']} on {report['device']}; torch {report['torch']} "
        f"(CUDA {report['cuda']}), diffusers {report['diffusers']}.",
        "",
        "| backend | frames | size | steps | load s | first render s | render s "
        "| s/step | peak alloc GiB | peak reserved GiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['backend']} | {r['frames']} | {r['width']}x{r['height']} | {r['steps']} "
            f"| {r['load_s']} | {r['warm_render_s']} | {r['render_s']} | {r['s_per_step']} "
            f"| {r['peak_allocated_gib'] if r['peak_allocated_gib'] is not None else '-'} "
            f"| {r['peak_reserved_gib'] if r['peak_reserved_gib'] is not None else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--steps", type=int, default=25, help="denoising steps (real sizes)")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a dry run")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("animatediff", "svd", "wan", "ltx"),
        default=["animatediff", "svd", "wan", "ltx"],
    )
    parser.add_argument("--workdir", help="where to save the random models (needs ~10 GB)")
    parser.add_argument("--json", help="write the figures as JSON to this file")
    parser.add_argument("--report", help="write the figures as Markdown to this file")
    args = parser.parse_args(argv)

    report = run(args)
    text = markdown(report)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.report:
        Path(args.report).write_text(
            "# GPU benchmark results\n\nWritten by `scripts/gpu_smoke.py`.\n\n" + text,
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
