"""The cast file: parsing, every error with its file and line, and who is in a beat."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from storyworld.engine.cast import (
    CastError,
    cast_path_for,
    find_cast,
    load_cast,
    speaker_name,
)

GOOD = """\
[style]
look = "ink and watercolour"
negative = "blurry"
seed = 7
continuity = "scene"
candidates = 3
music = "theme.ogg"

[characters.Mara]
description = "an old keeper, grey braid"
references = ["refs/mara.png"]
voice = "alto"

[characters."Old Tom"]
description = "a fisherman"
references = "refs/tom.jpg"

[scenes."EXT. LIGHTHOUSE - NIGHT"]
music = "storm.ogg"
"""


def _images(folder: Path) -> None:
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (200, 40, 40)).save(folder / "refs" / "mara.png")
    Image.new("RGB", (16, 16), (40, 40, 200)).save(folder / "refs" / "tom.jpg")


def _write(folder: Path, text: str) -> Path:
    _images(folder)
    path = folder / "pilot.cast.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_cast_file(tmp_path):
    path = _write(tmp_path, GOOD)
    cast = load_cast(path)

    assert cast.style.look == "ink and watercolour" and cast.style.seed == 7
    assert cast.style.continuity == "scene" and cast.style.candidates == 3
    assert cast.style.music == "theme.ogg"
    assert list(cast.characters) == ["Mara", "Old Tom"]
    mara = cast.characters["Mara"]
    assert mara.voice == "alto" and mara.line == 9
    ref = mara.references[0]
    assert ref.sha256 == hashlib.sha256((tmp_path / "refs/mara.png").read_bytes()).hexdigest()
    assert ref.content_type == "image/png"
    assert cast.characters["Old Tom"].references[0].content_type == "image/jpeg"
    assert cast.scene_setting("ext. lighthouse - night", "music") == "storm.ogg"


def test_found_beside_the_script(tmp_path):
    script = tmp_path / "pilot.fountain"
    script.write_text("EXT. SEA\n\nWaves.\n")
    assert cast_path_for(script) == tmp_path / "pilot.cast.toml"
    assert find_cast(script) is None
    _write(tmp_path, GOOD)
    assert find_cast(script) == tmp_path / "pilot.cast.toml"


def test_characters_in_a_beat(tmp_path):
    cast = load_cast(_write(tmp_path, GOOD))
    # Whole words, any case; multi-word names across whitespace.
    assert cast.characters_in("MARA climbs the stairs.") == ["Mara"]
    assert cast.characters_in("Maran and Tomas wait.") == []
    assert cast.characters_in("old  tom waves to mara.") == ["Mara", "Old Tom"]
    # Speakers by their cue, extensions ignored.
    assert cast.characters_in("The lamp flickers.", ["OLD TOM (V.O.)"]) == ["Old Tom"]
    assert cast.characters_in("The lamp flickers.", ["MARA (CONT'D)"]) == ["Mara"]
    assert speaker_name("@McCoy (O.S.) ^") == "McCoy"


def test_a_character_never_in_the_script_is_a_warning(tmp_path):
    cast = load_cast(_write(tmp_path, GOOD))
    warnings = cast.check_script([("Mara climbs.", []), ("Waves.", [])])
    assert len(warnings) == 1
    assert "line 14" in warnings[0] and "'Old Tom' never appears" in warnings[0]
    assert str(tmp_path / "pilot.cast.toml") in warnings[0]


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ('[style]\nlook = "a"\nseed = \n', 3, "TOML syntax error"),
        ('[style]\nlok = "a"\n', 2, "unknown key 'lok' in [style]"),
        ('[characters.Mara]\ndescription = "a"\nage = 3\n', 3, "unknown key 'age'"),
        ("[cast]\nx = 1\n", 1, "unknown key 'cast'"),
        ('[scenes."INT. HUT"]\nmusic = "a"\nmood = "b"\n', 3, "unknown key 'mood'"),
        (
            '[characters.Mara]\ndescription = "a"\n\n[characters.Mara]\nvoice = "b"\n',
            4,
            "duplicate character 'Mara'",
        ),
        (
            '[characters.Mara]\ndescription = "a"\n\n[characters.MARA]\nvoice = "b"\n',
            4,
            "duplicate character 'MARA'",
        ),
        ('[characters.Mara]\nreferences = ["refs/none.png"]\n', 2, "does not exist"),
        ('[characters.Mara]\nreferences = ["notes.txt"]\n', 2, "is not an image"),
        ('[characters.Mara]\nreferences = ["refs"]\n', 2, "does not exist"),
        ('[style]\ncontinuity = "shot"\n', 2, "continuity in [style] must be one of"),
        ("[style]\ncandidates = 0\n", 2, "candidates in [style]"),
        ('[style]\nseed = "x"\n', 2, "seed in [style]"),
        ("[characters.Mara]\nreferences = [3]\n", 2, "must be a list of image paths"),
    ],
)
def test_every_error_names_the_file_and_the_line(tmp_path, text, line, says):
    (tmp_path / "notes.txt").write_text("not an image")
    path = _write(tmp_path, text)
    with pytest.raises(CastError) as err:
        load_cast(path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}, line {line}: ")
    assert says in str(err.value)


def test_an_unreadable_reference(tmp_path):
    path = _write(tmp_path, '[characters.Mara]\nreferences = ["refs/locked.png"]\n')
    locked = tmp_path / "refs" / "locked.png"
    Image.new("RGB", (4, 4)).save(locked)
    locked.chmod(0)
    try:
        if locked.stat().st_mode and _readable(locked):
            pytest.skip("running as root: permissions do not stop reading")
        with pytest.raises(CastError, match=r"line 2: .*cannot be read"):
            load_cast(path)
    finally:
        locked.chmod(0o644)


def _readable(path: Path) -> bool:
    try:
        path.read_bytes()
    except OSError:
        return False
    return True
