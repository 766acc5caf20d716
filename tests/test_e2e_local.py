"""End to end through the real engine, queue, worker and store (threads, real Redis)."""

from __future__ import annotations

import time

from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.media import probe
from storyworld.storage import LocalStore

SCRIPT = "# Three beats\n\n[1s] A door opens.\n\n[2s] A cat walks in.\n\n[1.5s] The door closes.\n"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_three_beats_render_to_clips_and_episode(runtime, background) -> None:
    plan = plan_script(SCRIPT)
    detail = services.create_episode(runtime, plan, script=SCRIPT)
    background.engine(runtime)
    background.worker(runtime)
    background.worker(runtime)

    done = wait_for(
        lambda: (
            (d := services.episode_detail(runtime, detail["id"]))["state"]
            in ("completed", "failed")
            and d
        )
    )
    assert done["state"] == "completed", done["error"]
    store = runtime.store
    assert isinstance(store, LocalStore)
    fps = done["fps"]
    for beat in done["beats"]:
        assert beat["state"] == "done"
        info = probe(store.local_path(beat["clip_key"]))
        assert info.frames == round(beat["duration_s"] * fps)
        assert abs(info.duration_s - beat["duration_s"]) <= 1 / fps
        assert [j["state"] for j in beat["jobs"]] == ["succeeded"]
    final = probe(store.local_path(done["output_key"]))
    total = sum(b["duration_s"] for b in done["beats"])
    assert abs(final.duration_s - total) <= 1 / fps
    assert final.codec == "h264"
    kinds = sorted(a["kind"] for a in done["artifacts"])
    assert kinds.count("clip") == 3 and kinds.count("keyframe") == 3 and "episode" in kinds
