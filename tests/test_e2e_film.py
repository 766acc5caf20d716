"""`storyworld render` with a cast file, as a user runs it: keyframes first on Wan and
LTX-Video (tiny random models, SDXL + IP-Adapter keyframes), the approval gate from the
CLI on the animatic, an edit that re-renders one beat, and cast errors refused before
anything is queued. Real processes: the CLI with its engine, local worker processes, the
embedded Redis and the local store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from storyworld.config import load_settings
from storyworld.media import probe
from storyworld.storage import open_store

pytestmark = [pytest.mark.slow]

SCRIPT = """\
Title: The Keeper

EXT. LIGHTHOUSE - NIGHT

[1s] Mara climbs the stairs with a lantern.

[1s] Tom rows a small boat through the swell.

INT. LAMP ROOM - NIGHT

[1.5s] Tom bursts in, soaked, and Mara turns.
"""
CAST = """\
[style]
look = "ink and watercolour"

[characters.Mara]
description = "an old keeper, grey braid"
references = ["refs/mara.png"]

[characters.Tom]
description = "a young fisherman"
references = ["refs/tom.png"]
"""
FPS = 8
BEAT_FRAMES = [8, 8, 12]


def _project(tmp_path: Path, cast: str = CAST) -> Path:
    (tmp_path / "refs").mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(tmp_path / "refs" / "mara.png")
    Image.new("RGB", (32, 32), (40, 40, 200)).save(tmp_path / "refs" / "tom.png")
    (tmp_path / "keeper.cast.toml").write_text(cast, encoding="utf-8")
    script = tmp_path / "keeper.fountain"
    script.write_text(SCRIPT, encoding="utf-8")
    return script


def _env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))}
    for name in ("DATABASE_URL", "STORAGE_URL", "USE_DIFFUSION", "DEFAULT_BACKEND"):
        env.pop(name, None)
    env.update(
        {
            "STORYWORLD_HOME": str(tmp_path / "home"),
            "HF_HUB_OFFLINE": "1",
            "DEFAULT_WIDTH": "64",
            "DEFAULT_HEIGHT": "64",
            **(extra or {}),
        }
    )
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(run: subprocess.CompletedProcess, tmp_path: Path) -> subprocess.CompletedProcess:
    logs = "\n".join(p.read_text() for p in (tmp_path / "home" / "logs").glob("*.log"))
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n--- worker logs ---\n{logs[-5000:]}"
    return run


def _show(env: dict[str, str], episode_id: str) -> dict:
    shown = _cli(env, "episode", "show", episode_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def _episode_id(run: subprocess.CompletedProcess) -> str:
    return re.search(r"episode (\w+)", run.stderr).group(1)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["wan", "ltx"])
def test_render_a_cast_with_keyframes_first(backend, tmp_path, tiny_film_env):
    script = _project(tmp_path)
    env = _env(tmp_path, tiny_film_env)
    render = (
        "render", str(script), "--backend", backend, "--size", "64x64", "--fps", str(FPS),
        "--steps", "2", "--seed", "11", "--workers", "1", "--candidates", "3",
    )  # fmt: skip
    run = _ok(_cli(env, *render), tmp_path)
    final = probe(Path(run.stdout.strip().splitlines()[-1]))
    assert (final.frames, final.width, final.height) == (sum(BEAT_FRAMES), 64, 64)

    detail = _show(env, _episode_id(run))
    store = open_store(load_settings(env=env, env_file=None))
    refs = {a["key"] for a in detail["artifacts"] if a["kind"] == "reference"}
    assert len(refs) == 2
    assert [b["characters"] for b in detail["beats"]] == [["Mara"], ["Tom"], ["Mara", "Tom"]]
    for beat in detail["beats"]:
        keyframe_job, clip_job = beat["jobs"]
        assert keyframe_job["backend"] == "keyframe" and clip_job["backend"] == backend
        # Three candidates drawn, the best-scoring kept.
        candidates = keyframe_job["model_info"]["candidates"]
        assert len(candidates) == 3
        assert beat["score"] == max(c["score"] for c in candidates)
        keyframes = {a["key"] for a in detail["artifacts"] if a["kind"] == "keyframe"}
        assert beat["keyframe"] in keyframes
        assert store.local_path(beat["keyframe"]).is_file()
        settings = json.loads(
            store.local_path(beat["clip_key"].replace("clip.mp4", "settings.json")).read_text()
        )
        # The clip job carried keys: the references of its characters and the keyframe,
        # animated image-to-video.
        assert set(settings["spec"]["options"]["reference_keys"]) <= refs
        assert settings["spec"]["conditioning_key"] == beat["keyframe"]
        assert settings["model"]["role"] == "i2v"
        assert settings["model"]["model"] == tiny_film_env[f"{backend.upper()}_MODEL"]

    if backend != "wan":
        return
    # Edit one beat (and the title) and render again: the same script file makes a new
    # revision; one keyframe job and one clip job, the rest reused.
    edited = SCRIPT.replace("soaked, and", "and").replace("The Keeper", "The Keeper II")
    script.write_text(edited, encoding="utf-8")
    again = _ok(_cli(env, *render), tmp_path)
    second = _show(env, _episode_id(again))
    sent = [j for b in second["beats"] for j in b["jobs"]]
    assert [j["backend"] for j in sent] == ["keyframe", "wan"]
    assert [b["reused_from"] is not None for b in second["beats"]] == [True, True, False]
    assert [r["id"] for r in second["revisions"]] == [detail["id"], second["id"]]


def test_approve_and_reroll_from_the_cli(tmp_path):
    script = _project(tmp_path)
    env = _env(tmp_path, {"DEFAULT_FPS": str(FPS)})
    render = ("render", str(script), "--approve", "--workers", "1")
    first = _ok(_cli(env, *render), tmp_path)
    assert "awaits approval" in first.stderr
    episode_id = _episode_id(first)
    waiting = _show(env, episode_id)
    assert waiting["state"] == "awaiting_approval" and waiting["output_key"] is None
    assert all(b["keyframe"] and len(b["jobs"]) == 1 for b in waiting["beats"])

    _ok(_cli(env, "episode", "reroll", episode_id, "--beat", "2", "--seed", "99"), tmp_path)
    _ok(_cli(env, *render), tmp_path)  # resumes: draws beat 2's keyframe again, stops
    rerolled = _show(env, episode_id)
    assert rerolled["state"] == "awaiting_approval"
    assert [len(b["jobs"]) for b in rerolled["beats"]] == [1, 2, 1]
    assert rerolled["beats"][1]["jobs"][-1]["model_info"]["seed"] == 99

    approved = _ok(_cli(env, "episode", "approve", episode_id), tmp_path)
    assert "rendering" in approved.stdout
    done = _ok(_cli(env, *render), tmp_path)
    assert probe(Path(done.stdout.strip().splitlines()[-1])).frames == sum(BEAT_FRAMES)
    assert _show(env, episode_id)["state"] == "completed"


@pytest.mark.parametrize(
    ("cast", "line", "says"),
    [
        ('[style]\nlook = "ink"\nseed = \n', 3, "TOML syntax error"),
        ('[style]\nlok = "ink"\n', 2, "unknown key 'lok'"),
        ('[characters.Mara]\nreferences = ["refs/none.png"]\n', 2, "does not exist"),
        ('[characters.Mara]\nreferences = ["keeper.fountain"]\n', 2, "is not an image"),
        ("[characters.Mara]\n\n[characters.Mara]\n", 3, "duplicate character 'Mara'"),
        ("[characters.Mara]\n\n[characters.MARA]\n", 3, "duplicate character 'MARA'"),
    ],
)
def test_cast_errors_queue_nothing(tmp_path, cast, line, says):
    script = _project(tmp_path, cast)
    env = _env(tmp_path)
    for args in (("episode", "create", str(script)), ("render", str(script), "--workers", "0")):
        run = _cli(env, *args, timeout=60)
        assert run.returncode == 2, run.stderr
        assert f"{tmp_path / 'keeper.cast.toml'}, line {line}: " in run.stderr
        assert says in run.stderr
    listed = _cli(env, "episode", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_a_character_never_in_the_script_is_a_warning(tmp_path):
    script = _project(tmp_path, CAST + '\n[characters.Ghost]\ndescription = "unseen"\n')
    run = _cli(_env(tmp_path), "episode", "create", str(script), "--json", timeout=60)
    assert run.returncode == 0, run.stderr
    assert "warning:" in run.stderr and "'Ghost' never appears" in run.stderr
    assert "keeper.cast.toml, line 12: " in run.stderr
