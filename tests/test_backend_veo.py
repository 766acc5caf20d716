"""The Veo backend against a local stand-in of the Gemini API (tests/veo_server.py)."""

from __future__ import annotations

import logging
import threading

import av
import pytest
from gpu_fixtures import make_job
from PIL import Image
from veo_server import API_KEY, FILTER_REASON, RETIRED_MESSAGE, VeoTestServer

from storyworld.config import load_settings
from storyworld.worker.backends import available_backends
from storyworld.worker.backends.base import (
    PermanentRenderError,
    RenderCancelled,
    TransientRenderError,
)
from storyworld.worker.backends.veo import VeoBackend, request_body


@pytest.fixture(scope="module")
def veo_api():
    with VeoTestServer(slow_polls=3) as server:
        yield server


@pytest.fixture
def veo_settings(veo_api, tmp_path):
    def make(model: str = "veo-ok", **env: str):
        return load_settings(
            env={
                "STORYWORLD_HOME": str(tmp_path / "home"),
                "GEMINI_API_KEY": API_KEY,
                "VEO_MODEL": model,
                "VEO_API_BASE": veo_api.base_url,
                **env,
            },
            env_file=None,
        )

    return make


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch):
    monkeypatch.setattr(VeoBackend, "poll_initial_s", 0.02)
    monkeypatch.setattr(VeoBackend, "poll_max_s", 0.05)


def _frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_renders_a_clip_through_the_three_calls(veo_api, veo_settings, render_context):
    settings = veo_settings()
    job = make_job("veo", duration_s=1.0, seed=42, negative_prompt="blurry")
    ctx = render_context(job, settings)
    seen = len(veo_api.requests)

    out = VeoBackend(settings).render(ctx)

    assert out.video_path is not None and out.video_path.parent == ctx.workdir
    assert _frames(out.video_path) == 4 * 24  # the shortest clip Veo 3 makes that covers 1 s
    info = out.model_info
    assert info["model"] == "veo-ok" and info["operation"].startswith("models/veo-ok/operations/")
    assert (info["duration_seconds"], info["aspect_ratio"], info["seed"]) == (4, "16:9", 42)
    calls = veo_api.requests[seen:]
    start = calls[0]
    assert start.method == "POST" and start.path == "/v1beta/models/veo-ok:predictLongRunning"
    assert (
        start.body["instances"][0]["prompt"]
        == "a winter forest at dawn, a red fox runs through snow"
    )
    assert start.body["parameters"]["negativePrompt"] == "blurry"
    api_calls = [c for c in calls if not c.path.startswith("blob:")]
    blob_calls = [c for c in calls if c.path.startswith("blob:")]
    assert all(c.headers.get("x-goog-api-key") == API_KEY for c in api_calls)
    assert blob_calls and all("x-goog-api-key" not in c.headers for c in blob_calls)
    assert all(API_KEY not in c.path for c in calls)
    assert ctx.progress_log.calls[-1][0] == ctx.progress_log.calls[-1][1]


def test_a_slow_operation_is_polled_until_done(veo_api, veo_settings, render_context):
    settings = veo_settings("veo-slow")
    ctx = render_context(make_job("veo"), settings)
    seen = len(veo_api.requests)

    out = VeoBackend(settings).render(ctx)

    polls = [c for c in veo_api.requests[seen:] if "/operations/" in c.path]
    assert len(polls) == 3
    assert len(ctx.progress_log.calls) >= 4
    assert _frames(out.video_path) == 96


def test_quota_is_transient_and_may_fall_back(veo_settings, render_context):
    settings = veo_settings("veo-quota", VEO_FALLBACK_BACKEND="animatediff")
    with pytest.raises(TransientRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    assert caught.value.fallback_backend == "animatediff"
    assert "429 RESOURCE_EXHAUSTED" in str(caught.value)
    assert "retry after 17 s" in str(caught.value)

    settings = veo_settings("veo-quota")
    with pytest.raises(TransientRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    assert caught.value.fallback_backend is None


def test_a_retired_model_is_permanent_with_the_api_reason(veo_settings, render_context):
    settings = veo_settings("veo-retired")
    with pytest.raises(PermanentRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    message = str(caught.value)
    assert "Veo model 'veo-retired' is not available" in message and "VEO_MODEL" in message
    assert RETIRED_MESSAGE in message


def test_a_filtered_video_is_permanent_with_the_reason(veo_settings, render_context):
    settings = veo_settings("veo-filtered", VEO_FALLBACK_BACKEND="animatediff")
    with pytest.raises(PermanentRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    assert FILTER_REASON in str(caught.value)
    assert "safety filter" in str(caught.value)
    assert caught.value.fallback_backend is None


def test_an_operation_ending_in_quota_error_is_transient(veo_settings, render_context):
    settings = veo_settings("veo-op-quota", VEO_FALLBACK_BACKEND="svd")
    with pytest.raises(TransientRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    assert "RESOURCE_EXHAUSTED" in str(caught.value)
    assert caught.value.fallback_backend == "svd"


def test_the_deadline_is_transient(veo_settings, render_context):
    settings = veo_settings("veo-never", VEO_DEADLINE_SECONDS="0.3")
    with pytest.raises(
        TransientRenderError, match=r"not done after 0.3 s \(VEO_DEADLINE_SECONDS\)"
    ):
        VeoBackend(settings).render(render_context(make_job("veo"), settings))


def test_cancelling_stops_the_wait(veo_settings, render_context, monkeypatch):
    monkeypatch.setattr(VeoBackend, "poll_initial_s", 5.0)
    monkeypatch.setattr(VeoBackend, "poll_max_s", 5.0)
    settings = veo_settings("veo-never", VEO_DEADLINE_SECONDS="60")
    ctx = render_context(make_job("veo"), settings)
    timer = threading.Timer(0.3, ctx.cancel_event.set)
    timer.start()
    try:
        with pytest.raises(RenderCancelled):
            VeoBackend(settings).render(ctx)
    finally:
        timer.cancel()


def test_a_refused_key_is_permanent_and_never_shown(veo_settings, render_context):
    settings = veo_settings(GEMINI_API_KEY="wrong-key-123456")
    with pytest.raises(PermanentRenderError) as caught:
        VeoBackend(settings).render(render_context(make_job("veo"), settings))
    assert "refused GEMINI_API_KEY" in str(caught.value)
    assert "wrong-key-123456" not in str(caught.value)


def test_an_unreachable_api_is_transient(veo_settings, render_context):
    settings = veo_settings(VEO_API_BASE="http://127.0.0.1:9/v1beta")
    with pytest.raises(TransientRenderError, match="unreachable"):
        VeoBackend(settings).render(render_context(make_job("veo"), settings))


def test_the_key_never_reaches_logs_or_errors(veo_settings, render_context, caplog):
    caplog.set_level(logging.DEBUG)
    errors = []
    for model in ("veo-ok", "veo-quota", "veo-retired", "veo-filtered", "veo-op-quota"):
        settings = veo_settings(model)
        try:
            VeoBackend(settings).render(render_context(make_job("veo"), settings))
        except (TransientRenderError, PermanentRenderError) as e:
            errors.append(str(e))
    assert len(errors) == 4
    assert caplog.records  # httpx and the backend did log
    assert API_KEY not in caplog.text
    assert all(API_KEY not in e for e in errors)
    assert API_KEY not in repr(veo_settings().describe())


def test_image_to_video_sends_the_stored_keyframe(veo_api, veo_settings, render_context, tmp_path):
    keyframe = tmp_path / "kf.png"
    Image.new("RGB", (32, 18), (10, 200, 30)).save(keyframe)
    settings = veo_settings()
    job = make_job("veo", conditioning_key="ep1/kf.png")
    seen = len(veo_api.requests)
    VeoBackend(settings).render(render_context(job, settings, artifacts={"ep1/kf.png": keyframe}))
    image = veo_api.requests[seen].body["instances"][0]["image"]
    assert image["mimeType"] == "image/png" and image["bytesBase64Encoded"]


def test_availability():
    base = {"STORYWORLD_HOME": "home", "VEO_API_BASE": "http://127.0.0.1:1/v1beta"}
    no_key = load_settings(env=base, env_file=None)
    assert VeoBackend.availability(no_key) == "GEMINI_API_KEY is not set"
    assert available_backends(no_key, ["veo"]) == {"veo": "GEMINI_API_KEY is not set"}
    keyed = load_settings(env={**base, "GEMINI_API_KEY": API_KEY}, env_file=None)
    assert VeoBackend.availability(keyed) is None
    bad_base = load_settings(
        env={**base, "GEMINI_API_KEY": API_KEY, "VEO_API_BASE": "ftp://x"}, env_file=None
    )
    assert "VEO_API_BASE must be an http(s) URL" in VeoBackend.availability(bad_base)


@pytest.mark.parametrize(
    ("model", "seconds", "width", "height", "expected"),
    [
        ("veo-3.0-generate-001", 1.0, 512, 288, (4, "16:9")),
        ("veo-3.0-generate-001", 5.0, 512, 288, (6, "16:9")),
        ("veo-3.1-generate-preview", 12.0, 288, 512, (8, "9:16")),
        ("veo-2.0-generate-001", 1.0, 512, 512, (5, "16:9")),
        ("veo-2.0-generate-001", 6.5, 512, 288, (7, "16:9")),
    ],
)
def test_duration_and_aspect_ratio_stay_within_what_the_api_takes(
    model, seconds, width, height, expected
):
    spec = make_job("veo", duration_s=seconds, width=width, height=height).spec
    params = request_body(spec, model)["parameters"]
    assert (params["durationSeconds"], params["aspectRatio"]) == expected


def test_options_override_duration_and_aspect_ratio():
    spec = make_job("veo", options={"duration_seconds": 8, "aspect_ratio": "9:16"}).spec
    params = request_body(spec, "veo-3.0-generate-001")["parameters"]
    assert (params["durationSeconds"], params["aspectRatio"]) == (8, "9:16")
    bad = make_job("veo", options={"aspect_ratio": "4:3"}).spec
    with pytest.raises(PermanentRenderError, match="aspect_ratio"):
        request_body(bad, "veo-3.0-generate-001")
