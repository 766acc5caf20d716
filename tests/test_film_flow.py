"""The film flow end to end on the animatic (real engine, queue, worker and store):
a cast, keyframes first, candidates, the approval gate, re-rolls and the shot cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from test_e2e_local import wait_for

from storyworld.engine import services
from storyworld.engine.cast import load_cast
from storyworld.engine.planner import plan_script
from storyworld.media import probe

SCRIPT = """\
Title: The Keeper

EXT. LIGHTHOUSE - NIGHT

[1s] Mara climbs the stairs with a lantern.

MARA
Who is out there?

[1s] A small boat fights the swell.

INT. LAMP ROOM - NIGHT

[1.5s] Tom bursts in, soaked, and Mara turns.
"""

CAST = """\
[style]
look = "ink and watercolour"
negative = "blurry"

[characters.Mara]
description = "an old keeper, grey braid"
references = ["refs/mara.png"]

[characters.Tom]
description = "a young fisherman"
references = ["refs/tom.png"]
"""


def write_cast(folder: Path, text: str = CAST) -> Path:
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(folder / "refs" / "mara.png")
    Image.new("RGB", (32, 32), (40, 40, 200)).save(folder / "refs" / "tom.png")
    path = folder / "keeper.cast.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _state(rt, episode_id, *states):  # type: ignore[no-untyped-def]
    def check():  # type: ignore[no-untyped-def]
        d = services.episode_detail(rt, episode_id)
        if d["state"] == "failed":
            raise AssertionError(d["error"])
        return d if d["state"] in states else None

    return wait_for(check, timeout=60)


def _jobs(beat, stage):  # type: ignore[no-untyped-def]
    return [
        j for j in beat["jobs"] if j["model_info"].get("stage", "clip") == stage or stage == "any"
    ]


def _payload(runtime, job_id):  # type: ignore[no-untyped-def]
    from storyworld.engine.models import JobRow

    with runtime.sessions() as s:
        return json.loads(s.get(JobRow, job_id).payload)


def test_approve_reroll_approve(runtime, background, tmp_path) -> None:
    cast = load_cast(write_cast(tmp_path))
    plan = plan_script(SCRIPT)
    created = services.create_episode(
        runtime, plan, script=SCRIPT, cast=cast, approve=True, candidates=3, fps=8, seed=5
    )
    ep = created["id"]
    assert [b["characters"] for b in created["beats"]] == [["Mara"], [], ["Mara", "Tom"]]
    refs = [a for a in created["artifacts"] if a["kind"] == "reference"]
    assert len(refs) == 2 and all(r["key"].startswith(f"episodes/{ep}/references/") for r in refs)
    background.engine(runtime)
    background.worker(runtime)

    waiting = _state(runtime, ep, "awaiting_approval")
    for beat in waiting["beats"]:
        assert beat["stage"] == "approval" and beat["keyframe"]
        assert [j["state"] for j in beat["jobs"]] == ["succeeded"]  # one keyframe job
        candidates = beat["jobs"][0]["model_info"]["candidates"]
        assert len(candidates) == 3
    # Beats with references are scored; the kept candidate is the best.
    for i in (0, 2):
        info = waiting["beats"][i]["jobs"][0]["model_info"]
        assert waiting["beats"][i]["score"] == max(c["score"] for c in info["candidates"])
    assert waiting["beats"][1]["score"] is None
    first_keyframes = [b["keyframe"] for b in waiting["beats"]]
    # Keyframe jobs are a job kind of their own: a still and its settings, no clip.
    for beat in waiting["beats"]:
        job_id = beat["jobs"][0]["job_id"]
        assert _payload(runtime, job_id)["kind"] == "keyframe"
        kinds = {a["kind"] for a in waiting["artifacts"] if a["job_id"] == job_id}
        assert kinds == {"keyframe", "settings"}

    services.reroll_beat(runtime, ep, 2)
    again = _state(runtime, ep, "awaiting_approval")
    assert [len(b["jobs"]) for b in again["beats"]] == [1, 2, 1]
    assert again["beats"][1]["keyframe"] != first_keyframes[1]
    kept = [again["beats"][i]["keyframe"] for i in (0, 2)]
    assert kept == [first_keyframes[0], first_keyframes[2]]

    services.approve_episode(runtime, ep)
    done = _state(runtime, ep, "completed")
    fps = done["fps"]
    for beat in done["beats"]:
        clip_job = beat["jobs"][-1]
        payload = _payload(runtime, clip_job["job_id"])
        assert payload["kind"] == "clip" and payload["spec"]["options"]["stage"] == "clip"
        # The clip jobs carry keys, never bytes: the keyframe and the references.
        assert payload["spec"]["options"]["keyframe_key"] == beat["keyframe"]
        assert payload["spec"]["conditioning_key"] == beat["keyframe"]
        assert payload["spec"]["options"]["reference_keys"] == beat["reference_keys"]
        assert payload["spec"]["negative_prompt"] == "blurry"
        assert "ink and watercolour" in payload["spec"]["options"]["prompt"]
    assert len(done["beats"][2]["reference_keys"]) == 2
    final = probe(runtime.store.local_path(done["output_key"]))
    assert final.frames == sum(round(b["duration_s"] * fps) for b in done["beats"])
    assert "awaiting_approval" in [h["to"] for h in done["history"] if h["entity"] == "episode"]


def test_an_edited_beat_renders_alone(runtime, background, tmp_path) -> None:
    cast = load_cast(write_cast(tmp_path))
    background.engine(runtime)
    background.worker(runtime)
    first = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, fps=8, seed=5, reuse=True
    )
    one = _state(runtime, first["id"], "completed")
    assert one["film"]["revision"] == 1

    edited = SCRIPT.replace("Tom bursts in, soaked,", "Tom bursts in")
    second = services.create_episode(
        runtime, plan_script(edited), script=edited, cast=cast, fps=8, seed=5, reuse=True
    )
    two = _state(runtime, second["id"], "completed")
    assert two["film"]["revision"] == 2 and two["film"]["revision_of"] == one["id"]
    sent = [j for b in two["beats"] for j in b["jobs"]]
    # Exactly one keyframe job and one clip job, both for the edited beat.
    assert len(sent) == 2 and {j["job_id"].split("-b")[1][:3] for j in sent} == {"002"}
    assert [j["model_info"].get("stage", "clip") for j in sent] == ["keyframe", "clip"]
    for i in (0, 1):
        assert two["beats"][i]["reused_from"] == one["beats"][i]["jobs"][-1]["job_id"]
        assert two["beats"][i]["clip_key"] == one["beats"][i]["clip_key"]
    assert two["beats"][2]["reused_from"] is None
    assert [r["id"] for r in two["revisions"]] == [one["id"], two["id"]]
    final = probe(runtime.store.local_path(two["output_key"]))
    assert final.frames == sum(round(b["duration_s"] * 8) for b in two["beats"])


def test_a_backend_that_cannot_render_is_refused(runtime, tmp_path) -> None:
    from storyworld.config import ConfigError

    with pytest.raises(ConfigError, match="animates a keyframe"):
        services.create_episode(
            runtime, plan_script(SCRIPT), script=SCRIPT, backend="svd", keyframes="off"
        )
    assert services.list_episodes(runtime) == []


def test_continuity_scene_starts_from_the_previous_last_frame(
    runtime, background, tmp_path
) -> None:
    cast = load_cast(
        write_cast(tmp_path, CAST.replace('negative = "blurry"', 'continuity = "scene"'))
    )
    ep = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, fps=8, seed=5
    )["id"]
    background.engine(runtime)
    background.worker(runtime)
    background.worker(runtime)
    done = _state(runtime, ep, "completed")
    beats = done["beats"]
    last_frames = {a["job_id"]: a["key"] for a in done["artifacts"] if a["kind"] == "last_frame"}
    clip_jobs = [b["jobs"][-1] for b in beats]
    assert set(last_frames) == {j["job_id"] for j in clip_jobs}
    specs = [_payload(runtime, j["job_id"])["spec"] for j in clip_jobs]
    # Beat 2 is in beat 1's scene: it starts from beat 1's last frame, once it exists.
    assert specs[1]["conditioning_key"] == last_frames[clip_jobs[0]["job_id"]]
    assert specs[1]["options"]["continuity_from"] == 0
    assert clip_jobs[1]["queued_at"] >= clip_jobs[0]["finished_at"]
    # Beat 3 opens a new scene: from its own keyframe (beat 1 too, the first of its scene).
    assert specs[2]["conditioning_key"] == beats[2]["keyframe"]
    assert specs[0]["conditioning_key"] == beats[0]["keyframe"]
    assert "continuity_from" not in specs[2]["options"]


def test_a_low_score_is_rerolled_then_flagged(runtime, background, tmp_path) -> None:
    runtime.settings = runtime.settings.with_overrides(consistency_min=0.999, max_rerolls=2)
    cast = load_cast(write_cast(tmp_path))
    ep = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, fps=8, seed=5
    )["id"]
    background.engine(runtime)
    background.worker(runtime)
    done = _state(runtime, ep, "completed")
    for i in (0, 2):  # beats with references: scored, below the minimum
        beat = done["beats"][i]
        stages = [j["model_info"].get("stage", "clip") for j in beat["jobs"]]
        assert stages == ["keyframe", "keyframe", "keyframe", "clip"]
        assert beat["rerolls"] == 2 and beat["flagged"] and beat["score"] < 0.999
        seeds = [j["model_info"]["seed"] for j in beat["jobs"][:3]]
        assert len(set(seeds)) == 3  # every re-roll draws from a new seed
        reasons = [h["reason"] for h in done["history"] if h["id"] == beat["id"]]
        assert sum("below CONSISTENCY_MIN" in r for r in reasons) == 2
    assert done["beats"][1]["rerolls"] == 0 and not done["beats"][1]["flagged"]


def test_approvals_race_keyframes(runtime, background, tmp_path) -> None:
    """Approvals from several threads while the engine applies keyframes: the film state
    is read and written under a write lock, so no change is lost (SQLite here; PostgreSQL
    in test_film_postgres)."""
    import threading

    cast = load_cast(write_cast(tmp_path))
    ep = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, approve=True, fps=8
    )["id"]
    background.engine(runtime)
    background.worker(runtime)
    background.worker(runtime)
    threads = [
        threading.Thread(target=services.approve_episode, args=(runtime, ep, n)) for n in (1, 2, 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = _state(runtime, ep, "completed")
    assert all(b["approved"] and b["keyframe"] for b in done["beats"])


def test_vram_routing_puts_jobs_in_their_memory_class(runtime, tmp_path) -> None:
    from storyworld.engine.dispatch import build_job
    from storyworld.engine.models import Episode
    from storyworld.protocol import wake_suffix

    cast = load_cast(write_cast(tmp_path))
    ep = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, backend="wan", wake=False
    )["id"]
    with runtime.sessions() as s:
        episode = s.get(Episode, ep)
        beat = episode.beats[0]
        keyframe = build_job(episode, beat, 1, vram_routing=True)
        plain = build_job(episode, beat, 1)
    assert (keyframe.kind, keyframe.backend, keyframe.min_vram_gb) == ("keyframe", "keyframe", 12)
    assert wake_suffix(keyframe.backend, keyframe.min_vram_gb) == "keyframe@16"
    assert plain.min_vram_gb == 0.0  # off by default: CPU workers report no GPU memory
