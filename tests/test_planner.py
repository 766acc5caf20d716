"""Scripts to beats: plain text and Fountain, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyworld.engine.planner import ScriptError, plan_file, plan_script


def test_plain_text_title_durations_and_paragraphs() -> None:
    plan = plan_script(
        "# My Film\n\n[6s] First shot\ncontinues here.\n\n\nSecond shot.\n", default_beat_s=4
    )
    assert plan.title == "My Film" and plan.format == "plain"
    assert [(b.text, b.duration_s, b.line) for b in plan.beats] == [
        ("First shot continues here.", 6.0, 3),
        ("Second shot.", 4.0, 7),
    ]
    assert plan.total_seconds == 10


def test_fountain_scenes_actions_and_dialogue() -> None:
    text = """Title: The Heist

INT. BANK VAULT - NIGHT

[5s] The door swings open. Dust hangs in the torchlight.

MAYA
(whispering)
It's empty.

EXT. ROOFTOP - DAWN

Maya looks over the city.

CUT TO:

.SUBWAY TUNNEL

A train thunders past.
"""
    plan = plan_script(text, default_beat_s=3)
    assert plan.format == "fountain" and plan.title == "The Heist"
    assert [(b.scene, b.text, b.duration_s) for b in plan.beats] == [
        ("INT. BANK VAULT - NIGHT", "The door swings open. Dust hangs in the torchlight.", 5.0),
        ("EXT. ROOFTOP - DAWN", "Maya looks over the city.", 3.0),
        ("SUBWAY TUNNEL", "A train thunders past.", 3.0),
    ]
    assert plan.beats[0].captions == ["MAYA: It's empty."]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the script is empty"),
        ("   \n\n  ", "the script is empty"),
        ("# Only a title\n", "no beats"),
        ("Fine.\n\n[45s] Far too long a beat.", "line 3: beat lasts 45s, longer than the maximum"),
        ("Fine.\n\n[six seconds] Bad duration.", "line 3: cannot read the duration"),
        ("[0s] Zero.", "line 1: a beat's duration must be more than 0"),
        ("[3s]", "line 1: beat has a duration but no text"),
    ],
)
def test_invalid_scripts_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message.replace("(", r"\(")):
        plan_script(text, max_beat_s=30)


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="cannot read"):
        plan_file(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x00garbage")
    with pytest.raises(ScriptError, match=r"not UTF-8|not a text file"):
        plan_file(tmp_path / "bin.txt")


def test_file_title_from_name_and_fountain_by_extension(tmp_path: Path) -> None:
    p = tmp_path / "night_train.fountain"
    p.write_text("A train at night.\n\nIt stops.\n")
    plan = plan_file(p)
    assert plan.format == "fountain" and plan.title == "Night Train"
    assert len(plan.beats) == 2
