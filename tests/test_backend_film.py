"""The film backends (Wan, LTX-Video, SDXL + IP-Adapter keyframes) on tiny random models
loaded through their real code, and the capability registry."""

from __future__ import annotations

import json

import pytest
from gpu_fixtures import make_job
from PIL import Image

from storyworld.capabilities import CAPABILITIES, Need, backends_for, describe_need
from storyworld.config import load_settings
from storyworld.worker.backends import KNOWN_BACKENDS, available_backends
from storyworld.worker.backends.base import PermanentRenderError

pytestmark = pytest.mark.gpu


@pytest.fixture
def film_settings(tiny_film_env, tmp_path):
    def make(**env):
        return load_settings(
            env={"STORYWORLD_HOME": str(tmp_path / "home"), **tiny_film_env, **env},
            env_file=None,
        )

    return make


def _images(tmp_path, **colours):
    out = {}
    for name, colour in colours.items():
        path = tmp_path / f"{name}.png"
        Image.new("RGB", (48, 48), colour).save(path)
        out[f"ep1/references/{name}.png"] = path
    return out


def test_every_backend_is_declared():
    assert set(CAPABILITIES) == set(KNOWN_BACKENDS)
    assert backends_for(Need(image=True), ["animatediff", "svd", "wan"]) == ["svd", "wan"]
    assert backends_for(Need(), ["svd", "ltx"]) == ["ltx"]
    assert backends_for(Need(keyframe=True), KNOWN_BACKENDS) == ["animatic", "keyframe"]
    assert "needs a keyframe" in describe_need(Need(), "svd")
    assert describe_need(Need(image=True, last_frame=True), "wan") is None


@pytest.mark.parametrize("backend", ["wan", "ltx"])
def test_text_to_video(backend, film_settings, render_context):
    from storyworld.worker.backends import backend_class

    settings = film_settings()
    assert available_backends(settings, [backend]) == {backend: None}
    job = make_job(backend, options={"prompt": "the sea at night"})
    ctx = render_context(job, settings)

    out = backend_class(backend)(settings).render(ctx)

    info = out.model_info
    assert info["role"] == "t2v" and info["conditioning"] == {"kind": "text"}
    assert info["prompt"] == "the sea at night" and info["seed"] == 1234
    # 8 frames asked, the nearest count the model takes (4k+1 / 8k+1) rendered; its fps
    # spans the beat, so the worker resamples to 8.
    assert len(out.frames) == info["num_frames"] == 9 and out.fps == 9
    assert {f.size for f in out.frames} == {(64, 64)}
    assert ctx.progress_log.calls[-1] == (2, 2)
    json.dumps(info)


@pytest.mark.parametrize("backend", ["wan", "ltx"])
def test_image_to_video_from_a_stored_keyframe(backend, film_settings, render_context, tmp_path):
    from storyworld.worker.backends import backend_class

    settings = film_settings()
    artifacts = _images(tmp_path, key=(200, 40, 40))
    job = make_job(backend, conditioning_key="ep1/references/key.png", seed=3)
    out = backend_class(backend)(settings).render(
        render_context(job, settings, artifacts=artifacts)
    )

    assert out.model_info["role"] == "i2v"
    assert out.model_info["conditioning"] == {"kind": "keyframe", "key": "ep1/references/key.png"}
    assert out.keyframe.getpixel((5, 5)) == (200, 40, 40)
    assert len(out.frames) == 9


def test_ltx_first_and_last_frame(film_settings, render_context, tmp_path):
    from storyworld.worker.backends.ltx import LTXBackend

    settings = film_settings()
    artifacts = _images(tmp_path, a=(200, 0, 0), b=(0, 0, 200))
    job = make_job(
        "ltx",
        conditioning_key="ep1/references/a.png",
        options={"last_frame_key": "ep1/references/b.png"},
    )
    out = LTXBackend(settings).render(render_context(job, settings, artifacts=artifacts))
    assert out.model_info["role"] == "flf" and out.model_info["last_frame_used"]
    assert out.model_info["conditioning"]["last_frame_key"] == "ep1/references/b.png"


def test_wan_ti2v_declares_no_last_frame(film_settings, render_context, tmp_path):
    from storyworld.worker.backends.wan import WanBackend

    settings = film_settings()
    backend = WanBackend(settings)
    cap = backend.capabilities()
    assert (cap.t2v, cap.i2v, cap.first_last_frame) == (True, True, False)
    # A last frame asked of a checkpoint that cannot: animated from the first alone.
    artifacts = _images(tmp_path, a=(200, 0, 0), b=(0, 0, 200))
    job = make_job(
        "wan",
        conditioning_key="ep1/references/a.png",
        options={"last_frame_key": "ep1/references/b.png"},
    )
    out = backend.render(render_context(job, settings, artifacts=artifacts))
    assert out.model_info["role"] == "i2v" and not out.model_info["last_frame_used"]


def test_a_missing_keyframe_is_permanent(film_settings, render_context):
    from storyworld.worker.backends.wan import WanBackend

    settings = film_settings()
    job = make_job("wan", conditioning_key="ep1/nothing.png")
    with pytest.raises(PermanentRenderError, match="not in the store"):
        WanBackend(settings).render(render_context(job, settings))


def test_a_missing_model_names_the_setting(film_settings, tmp_path):
    settings = film_settings(WAN_MODEL=str(tmp_path / "nowhere"), LTX_MODEL=str(tmp_path))
    reasons = available_backends(settings, ["wan", "ltx"])
    assert "WAN_MODEL" in reasons["wan"] and "does not exist" in reasons["wan"]
    assert "LTX_MODEL" in reasons["ltx"] and "model_index.json" in reasons["ltx"]


def test_keyframe_candidates_scored_against_the_references(film_settings, render_context, tmp_path):
    from storyworld.worker.backends.keyframe import KeyframeBackend

    settings = film_settings()
    assert available_backends(settings, ["keyframe"]) == {"keyframe": None}
    artifacts = _images(tmp_path, mara=(200, 40, 40), tom=(40, 40, 200))
    job = make_job(
        "keyframe",
        seed=10,
        options={
            "candidates": 3,
            "reference_keys": ["ep1/references/mara.png", "ep1/references/tom.png"],
        },
    )
    ctx = render_context(job, settings, artifacts=artifacts)
    out = KeyframeBackend(settings).render(ctx)

    info = out.model_info
    assert [c["seed"] for c in info["candidates"]] == [10, 11, 12]
    scores = [c["score"] for c in info["candidates"]]
    assert all(-1.0 <= s <= 1.0 for s in scores) and len(set(scores)) == 3
    assert info["score"] == max(scores)
    assert info["seed"] == 10 + scores.index(max(scores))
    assert info["ip_adapter_scale"] == settings.ip_adapter_scale
    assert out.keyframe.size == (64, 64) and out.frames == [out.keyframe]
    # One count over the three candidates.
    assert ctx.progress_log.calls[-1] == (6, 6)


def test_keyframe_without_references_has_no_score(film_settings, render_context):
    from storyworld.worker.backends.keyframe import KeyframeBackend

    settings = film_settings()
    out = KeyframeBackend(settings).render(render_context(make_job("keyframe"), settings))
    assert out.model_info["score"] is None and out.model_info["ip_adapter_scale"] == 0.0


def test_keyframe_without_an_ip_adapter(film_settings, render_context):
    from storyworld.worker.backends.keyframe import KeyframeBackend

    settings = film_settings(IP_ADAPTER_MODEL="")
    out = KeyframeBackend(settings).render(render_context(make_job("keyframe"), settings))
    assert out.model_info["ip_adapter"] == "" and out.keyframe.size == (64, 64)


def test_the_references_condition_the_keyframe(film_settings, render_context, tmp_path):
    """Same prompt and seed, other references: another image (the IP-Adapter is wired in,
    not only loaded)."""
    from storyworld.worker.backends.keyframe import KeyframeBackend

    settings = film_settings()
    backend = KeyframeBackend(settings)
    artifacts = _images(tmp_path, red=(220, 20, 20), blue=(20, 20, 220))
    images = []
    for name in ("red", "blue"):
        job = make_job("keyframe", options={"reference_keys": [f"ep1/references/{name}.png"]})
        out = backend.render(render_context(job, settings, artifacts=artifacts))
        images.append(out.keyframe.tobytes())
    assert images[0] != images[1]


def test_plan_routes_each_stage_by_capability():
    from storyworld.config import ConfigError
    from storyworld.engine.film import plan_film
    from storyworld.engine.planner import plan_script

    plan = plan_script("[1s] A door opens.\n\n[1s] A cat walks in.\n")
    inputs = {"backend": "x"}
    # SVD animates a keyframe: every beat gets one, drawn by the keyframe backend.
    svd = plan_film(plan, None, backend="svd", render_inputs=inputs)
    assert svd["keyframe_backend"] == "keyframe"
    assert {b["stage"] for b in svd["beats"].values()} == {"keyframe"}
    # A text-to-video backend renders directly when nothing asks for a keyframe.
    wan = plan_film(plan, None, backend="wan", render_inputs=inputs)
    assert {b["stage"] for b in wan["beats"].values()} == {"clip"}
    # AnimateDiff cannot animate a keyframe: the clip gets the keyframe's prompt instead.
    ad = plan_film(plan, None, backend="animatediff", keyframes="on", render_inputs=inputs)
    assert {b["stage"] for b in ad["beats"].values()} == {"keyframe"}
    from storyworld.engine.film import clip_fields

    info = {**ad["beats"]["0"], "keyframe": "k.png"}
    assert clip_fields("animatediff", info)["conditioning_key"] is None
    assert clip_fields("wan", info)["conditioning_key"] == "k.png"
    with pytest.raises(ConfigError, match="animates a keyframe"):
        plan_film(plan, None, backend="svd", keyframes="off", render_inputs=inputs)


def test_wan_first_and_last_frame_checkpoint(film_settings, render_context, tmp_path, tiny_wan_flf):
    from storyworld.worker.backends.wan import WanBackend

    settings = film_settings(WAN_MODEL=str(tiny_wan_flf))
    backend = WanBackend(settings)
    cap = backend.capabilities()
    assert (cap.t2v, cap.i2v, cap.first_last_frame) == (False, True, True)
    artifacts = _images(tmp_path, a=(200, 0, 0), b=(0, 0, 200))
    job = make_job(
        "wan",
        conditioning_key="ep1/references/a.png",
        options={"last_frame_key": "ep1/references/b.png"},
    )
    out = backend.render(render_context(job, settings, artifacts=artifacts))
    assert out.model_info["role"] == "flf" and out.model_info["last_frame_used"]
    assert len(out.frames) == 9
    # Text alone is refused at once: this checkpoint needs a keyframe.
    with pytest.raises(PermanentRenderError, match="needs a keyframe"):
        backend.render(render_context(make_job("wan"), settings))
