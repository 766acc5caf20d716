"""The AnimateDiff backend, on tiny random models loaded through its real loading code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gpu_fixtures import make_job

from storyworld.worker.backends import available_backends
from storyworld.worker.backends.base import RenderCancelled, TransientRenderError

pytestmark = pytest.mark.gpu


def _backend(settings):
    from storyworld.worker.backends.animatediff import AnimateDiffBackend

    return AnimateDiffBackend(settings)


def test_renders_the_beat_and_records_how(gpu_settings, render_context, fresh_pipelines):
    settings = gpu_settings()
    job = make_job("animatediff", duration_s=1.0, fps=8, steps=2, seed=7)
    ctx = render_context(job, settings)

    out = _backend(settings).render(ctx)

    assert len(out.frames) == job.spec.frame_count == 8
    assert {f.size for f in out.frames} == {(64, 64)}
    assert out.fps == 8
    assert out.keyframe is not None and out.keyframe.size == (64, 64)
    info = out.model_info
    assert info["model"] == settings.animatediff_base_model
    assert info["motion_adapter"] == settings.animatediff_motion_adapter
    assert (info["seed"], info["steps"], info["num_frames"]) == (7, 2, 8)
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert "DDIMScheduler" in info["scheduler"] and "linspace" in info["scheduler"]
    json.dumps(info)  # stored as the clip's settings record
    assert ctx.progress_log.calls[:2] == [(1, 2), (2, 2)]


def test_pipeline_is_loaded_once_and_a_seed_reproduces_the_clip(
    gpu_settings, render_context, fresh_pipelines
):
    settings = gpu_settings()
    first = _backend(settings)
    second = _backend(settings)  # another instance in the same process shares it
    job = make_job("animatediff", seed=99)

    a = first.render(render_context(job, settings))
    b = second.render(render_context(job, settings))

    assert fresh_pipelines.loads == 1
    assert first.describe()["loaded"] is True
    assert [f.tobytes() for f in a.frames] == [f.tobytes() for f in b.frames]


def test_a_cancelled_job_stops_at_the_next_step(gpu_settings, render_context):
    settings = gpu_settings()
    job = make_job("animatediff", steps=6)
    ctx = render_context(job, settings, cancel_at=2)

    with pytest.raises(RenderCancelled):
        _backend(settings).render(ctx)

    assert ctx.progress_log.calls == [(1, 6), (2, 6)]


def test_out_of_memory_is_transient_and_the_pipeline_reloads(
    gpu_settings, render_context, fresh_pipelines, monkeypatch
):
    import torch
    from diffusers import AnimateDiffPipeline

    settings = gpu_settings()
    backend = _backend(settings)
    backend.warm_up()
    assert fresh_pipelines.loads == 1

    def out_of_memory(self, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(AnimateDiffPipeline, "__call__", out_of_memory)
        with pytest.raises(TransientRenderError, match="out of memory"):
            backend.render(render_context(make_job("animatediff"), settings))
    assert backend.describe()["loaded"] is False

    out = backend.render(render_context(make_job("animatediff"), settings))
    assert len(out.frames) == 8
    assert fresh_pipelines.loads == 2


def test_availability_names_what_is_missing(gpu_settings, tmp_path, monkeypatch):
    from storyworld.worker.backends.animatediff import AnimateDiffBackend

    assert AnimateDiffBackend.availability(gpu_settings()) is None
    assert available_backends(gpu_settings(), ["animatediff"]) == {"animatediff": None}

    missing = tmp_path / "no-such-model"
    reason = AnimateDiffBackend.availability(gpu_settings(ANIMATEDIFF_BASE_MODEL=str(missing)))
    assert reason == f"ANIMATEDIFF_BASE_MODEL '{missing}' does not exist"

    empty = tmp_path / "empty"
    empty.mkdir()
    reason = AnimateDiffBackend.availability(gpu_settings(ANIMATEDIFF_MOTION_ADAPTER=str(empty)))
    assert reason is not None and reason.startswith(f"ANIMATEDIFF_MOTION_ADAPTER '{empty}'")
    assert "config.json" in reason

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reason = AnimateDiffBackend.availability(
        gpu_settings(ANIMATEDIFF_BASE_MODEL="storyworld-tests/not-a-real-model")
    )
    assert reason == (
        "ANIMATEDIFF_BASE_MODEL 'storyworld-tests/not-a-real-model' not found locally "
        "and HF_HUB_OFFLINE=1"
    )


def _as_hf_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay `folder` out the way huggingface_hub caches a downloaded repo."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    revision = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def test_loads_offline_from_the_hugging_face_cache(tiny_models, tmp_path):
    cache = tmp_path / "hf-cache"
    _as_hf_cache(cache, "storyworld-tests/tiny-sd15", tiny_models["sd15"])
    _as_hf_cache(cache, "storyworld-tests/tiny-motion", tiny_models["motion_adapter"])
    script = """
from storyworld.config import load_settings
from storyworld.worker.backends.animatediff import AnimateDiffBackend
settings = load_settings(env={
    "STORYWORLD_HOME": "home",
    "ANIMATEDIFF_BASE_MODEL": "storyworld-tests/tiny-sd15",
    "ANIMATEDIFF_MOTION_ADAPTER": "storyworld-tests/tiny-motion",
}, env_file=None)
assert AnimateDiffBackend.availability(settings) is None, AnimateDiffBackend.availability(settings)
backend = AnimateDiffBackend(settings)
backend.warm_up()
print("loaded", backend.describe()["loaded"])
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(cache),
        "HF_HOME": str(tmp_path / "hf-home"),
    }
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "loaded True" in run.stdout


def test_a_model_missing_at_load_time_says_which(
    gpu_settings, tiny_models, fresh_pipelines, tmp_path
):
    from storyworld.worker.backends.animatediff import AnimateDiffBackend
    from storyworld.worker.backends.diffusion import ModelMissing

    no_unet = tmp_path / "sd-without-unet"
    shutil.copytree(tiny_models["sd15"], no_unet)
    shutil.rmtree(no_unet / "unet")
    reason = AnimateDiffBackend.availability(gpu_settings(ANIMATEDIFF_BASE_MODEL=str(no_unet)))
    assert reason == f"ANIMATEDIFF_BASE_MODEL '{no_unet}' lacks the folder(s) unet"

    # Weights gone but every folder there: only loading finds out, and says which setting.
    no_weights = tmp_path / "sd-without-weights"
    shutil.copytree(tiny_models["sd15"], no_weights)
    for weights in (no_weights / "unet").glob("diffusion_pytorch_model*"):
        weights.unlink()
    settings = gpu_settings(ANIMATEDIFF_BASE_MODEL=str(no_weights))
    assert AnimateDiffBackend.availability(settings) is None
    with pytest.raises(
        ModelMissing, match=r"ANIMATEDIFF_BASE_MODEL '.*sd-without-weights' \(local"
    ):
        _backend(settings).warm_up()


def test_a_clip_longer_than_the_motion_window_uses_free_noise(
    gpu_settings, render_context, fresh_pipelines, tmp_path
):
    import torch
    from diffusers import MotionAdapter

    # A motion module that sees 8 frames at once (the real one sees 32: 4 s at 8 fps).
    torch.manual_seed(0)
    short = tmp_path / "motion-8"
    MotionAdapter(
        block_out_channels=(32, 64),
        motion_layers_per_block=2,
        motion_norm_num_groups=2,
        motion_num_attention_heads=4,
        motion_max_seq_length=8,
    ).save_pretrained(short)
    settings = gpu_settings(ANIMATEDIFF_MOTION_ADAPTER=str(short))
    backend = _backend(settings)

    long_out = backend.render(render_context(make_job("animatediff", duration_s=1.5), settings))
    assert len(long_out.frames) == 12
    assert long_out.model_info["free_noise"] is True

    short_out = backend.render(render_context(make_job("animatediff", duration_s=1.0), settings))
    assert len(short_out.frames) == 8
    assert short_out.model_info["free_noise"] is False
    assert fresh_pipelines.loads == 1


def test_half_precision_on_cuda_and_float32_on_the_cpu(monkeypatch):
    import torch

    from storyworld.worker.backends.diffusion import choose_placement

    assert choose_placement().dtype == torch.float32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert (choose_placement().device, choose_placement().dtype) == ("cuda", torch.bfloat16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_placement().dtype == torch.float16
