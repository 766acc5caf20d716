"""`storyworld render` with voices and music from a cast file, as a user runs it; bad
voices and sound files refused before anything is queued."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.test_e2e_film import _cli, _env, _episode_id, _ok, _show

SCRIPT = """\
Title: Night Shift

INT. DINER - NIGHT

[2s] Mara wipes the counter.

MARA
Last coffee of the night.

TOM
Make it two.
"""


def _wav(path: Path) -> None:
    t = np.arange(22050) / 22050
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((0.3 * np.sin(2 * np.pi * 196 * t) * 32767).astype("<i2").tobytes())


def _project(tmp_path: Path, cast: str) -> Path:
    (tmp_path / "diner.cast.toml").write_text(cast, encoding="utf-8")
    script = tmp_path / "diner.fountain"
    script.write_text(SCRIPT, encoding="utf-8")
    return script


@pytest.mark.slow
def test_cast_voices_and_scene_music_render(tmp_path: Path) -> None:
    _wav(tmp_path / "diner.wav")
    cast = (
        '[characters.Mara]\nvoice = "alto, weathered"\n\n'
        '[scenes."INT. DINER - NIGHT"]\nmusic = "diner.wav"\n'
    )
    script = _project(tmp_path, cast)
    env = _env(tmp_path)
    run = _ok(_cli(env, "render", str(script), "--workers", "1", "--burn-subtitles"), tmp_path)
    assert Path(run.stdout.strip().splitlines()[-1]).is_file()
    detail = _show(env, _episode_id(run))
    (beat,) = detail["beats"]
    speech = beat["jobs"][-1]["model_info"]["speech"]
    assert [c["speaker"] for c in speech["cues"]] == ["MARA", "TOM"]
    assert speech["voices"]["MARA"].startswith("espeak:en-us+croak")
    sound = detail["options"]["sound"]
    assert sound["scenes"]["INT. DINER - NIGHT"] == str(tmp_path / "diner.wav")
    assert sound["burn_subtitles"] is True
    assert abs(detail["options"]["mix"]["lufs"] + 16) <= 1


@pytest.mark.parametrize(
    ("cast", "says"),
    [
        ('[characters.Tom]\nvoice = "gruff pirate"\n', "voice 'gruff pirate' of TOM"),
        ('[style]\nmusic = "missing.ogg"\n', "missing.ogg does not exist"),
    ],
)
def test_bad_voices_and_music_queue_nothing(tmp_path: Path, cast: str, says: str) -> None:
    script = _project(tmp_path, cast)
    env = _env(tmp_path)
    run = _cli(env, "render", str(script), "--workers", "0", timeout=60)
    assert run.returncode == 2, run.stderr
    assert says in run.stderr
    listed = _cli(env, "episode", "list", "--json")
    assert json.loads(listed.stdout) == []
