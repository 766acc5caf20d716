"""The Stable Video Diffusion backend, on tiny random models loaded through its real code."""

from __future__ import annotations

import json

import pytest
from gpu_fixtures import make_job
from PIL import Image

from storyworld.worker.backends.base import (
    PermanentRenderError,
    RenderCancelled,
    TransientRenderError,
)

pytestmark = pytest.mark.gpu


def _backend(settings):
    from storyworld.worker.backends.svd import SVDBackend

    return SVDBackend(settings)


def test_animates_a_stored_keyframe(gpu_settings, render_context, tmp_path):
    keyframe = tmp_path / "given.png"
    Image.new("RGB", (128, 96), (200, 40, 40)).save(keyframe)
    settings = gpu_settings()
    job = make_job("svd", conditioning_key="ep1/beats/0/given.png", seed=5)
    ctx = render_context(job, settings, artifacts={"ep1/beats/0/given.png": keyframe})

    out = _backend(settings).render(ctx)

    assert len(out.frames) == job.spec.frame_count == 8
    assert out.fps == 8
    assert {f.size for f in out.frames} == {(64, 64)}
    assert out.keyframe.size == (64, 64)
    assert out.keyframe.getpixel((32, 32)) == (200, 40, 40)
    info = out.model_info
    assert info["conditioning"] == {"kind": "stored", "key": "ep1/beats/0/given.png"}
    assert (info["model"], info["seed"], info["steps"]) == (settings.svd_model, 5, 2)
    assert info["motion_bucket_id"] == 127 and info["decode_chunk_size"] == 8
    json.dumps(info)
    assert ctx.progress_log.calls[:2] == [(1, 2), (2, 2)]


def test_without_a_keyframe_it_animates_the_animatic_frame(gpu_settings, render_context):
    from storyworld.worker.backends.animatic import draw_keyframe

    settings = gpu_settings()
    job = make_job("svd", options={"motion_bucket_id": 60, "decode_chunk_size": 3})
    out = _backend(settings).render(render_context(job, settings))

    assert out.model_info["conditioning"] == {"kind": "animatic"}
    assert out.model_info["motion_bucket_id"] == 60
    assert out.model_info["decode_chunk_size"] == 3
    expected = draw_keyframe(job.spec).convert("RGB").resize((64, 64))
    assert out.keyframe.size == expected.size
    assert len(out.frames) == 8


def test_use_diffusion_draws_the_keyframe_with_the_keyframe_model(
    gpu_settings, render_context, fresh_pipelines
):
    settings = gpu_settings(USE_DIFFUSION="true")
    job = make_job("svd", options={"keyframe_steps": 2})
    ctx = render_context(job, settings)

    out = _backend(settings).render(ctx)

    source = out.model_info["conditioning"]
    assert source["kind"] == "diffusion"
    assert source["model"] == settings.keyframe_model and source["steps"] == 2
    # One count over both pipelines: 2 keyframe steps, then 2 video steps (SD 1.5's PNDM
    # scheduler takes one step more than asked, reported within the keyframe's share).
    calls = ctx.progress_log.calls
    assert calls == sorted(calls)
    assert sorted(set(calls)) == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert fresh_pipelines.loads == 2
    assert len(out.frames) == 8


def test_frames_are_capped_and_spread_over_the_beat(gpu_settings, render_context):
    settings = gpu_settings()
    job = make_job("svd", duration_s=1.0, fps=8, options={"max_frames": 4})
    out = _backend(settings).render(render_context(job, settings))

    assert len(out.frames) == 4
    assert out.fps == 4  # 4 frames over the 1 s beat; the worker resamples to 8 fps
    assert out.model_info["num_frames"] == 4


def test_a_cancelled_job_stops_at_the_next_step(gpu_settings, render_context):
    settings = gpu_settings()
    ctx = render_context(make_job("svd", steps=6), settings, cancel_at=2)
    with pytest.raises(RenderCancelled):
        _backend(settings).render(ctx)
    assert ctx.progress_log.calls == [(1, 6), (2, 6)]


def test_out_of_memory_is_transient_and_the_pipeline_reloads(
    gpu_settings, render_context, fresh_pipelines, monkeypatch
):
    from diffusers import StableVideoDiffusionPipeline

    settings = gpu_settings()
    backend = _backend(settings)

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(StableVideoDiffusionPipeline, "__call__", out_of_memory)
        with pytest.raises(TransientRenderError, match="out of memory"):
            backend.render(render_context(make_job("svd"), settings))
    assert backend.describe()["loaded"] is False
    assert fresh_pipelines.loads == 1

    job = make_job("svd", options={"max_frames": 2})
    assert len(backend.render(render_context(job, settings)).frames) == 2
    assert fresh_pipelines.loads == 2


def test_a_missing_stored_keyframe_is_permanent(gpu_settings, render_context):
    settings = gpu_settings()
    ctx = render_context(make_job("svd", conditioning_key="ep1/nope.png"), settings)
    with pytest.raises(PermanentRenderError, match=r"'ep1/nope\.png' is not in the store"):
        _backend(settings).render(ctx)


def test_availability_names_what_is_missing(gpu_settings, tmp_path):
    from storyworld.worker.backends.svd import SVDBackend

    assert SVDBackend.availability(gpu_settings()) is None
    assert SVDBackend.availability(gpu_settings(USE_DIFFUSION="true")) is None
    gone = tmp_path / "svd-gone"
    assert SVDBackend.availability(gpu_settings(SVD_MODEL=str(gone))) == (
        f"SVD_MODEL '{gone}' does not exist"
    )
    # The keyframe model matters only when USE_DIFFUSION is on.
    assert SVDBackend.availability(gpu_settings(KEYFRAME_MODEL=str(gone))) is None
    assert SVDBackend.availability(
        gpu_settings(USE_DIFFUSION="true", KEYFRAME_MODEL=str(gone))
    ) == (f"KEYFRAME_MODEL '{gone}' does not exist")
