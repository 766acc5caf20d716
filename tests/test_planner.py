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


SCREENPLAY = """Title:
    **THE LAST LIGHT**
    _a short_
Credit: Written by
Author: Ana Writer
Draft date: 1 Dec 2026

# ACT ONE

= Maya finds the lighthouse dark.

EXT. LIGHTHOUSE - NIGHT #1#

WIDE on the **lighthouse**. A *storm* rolls in over the sea. [[fix the timing]]

/* An old scene the editor cut.

LEO
Never mind.
*/

MAYA (V.O.)
(quietly)
I came back for the light.
(beat)
Only the light.

LEO (O.S.) ^
Who's there?

CUT TO:

INT. DINER - DAY

CLOSE ON Leo, holding a phone.

LEO (CONT'D)
She's here.

===

> THE END <
"""


def test_fountain_title_page_sections_and_emphasis() -> None:
    plan = plan_script(SCREENPLAY)
    assert plan.title == "THE LAST LIGHT a short"
    assert plan.title_page["author"] == "Ana Writer"
    assert plan.title_page["draft date"] == "1 Dec 2026"
    assert plan.sections == ["ACT ONE"]
    first = plan.beats[0]
    assert first.text == "WIDE on the lighthouse. A storm rolls in over the sea."
    assert first.scene == "EXT. LIGHTHOUSE - NIGHT"  # scene number dropped
    assert first.section == "ACT ONE"
    assert first.synopsis == "Maya finds the lighthouse dark."
    assert "Never mind" not in " ".join(first.captions)  # boneyard


def test_fountain_dialogue_lines_in_order_with_extensions() -> None:
    plan = plan_script(SCREENPLAY)
    first, diner, end = plan.beats
    assert [(d.speaker, d.text, d.parenthetical, d.extension, d.dual) for d in first.dialogue] == [
        ("MAYA", "I came back for the light.", "quietly", "V.O.", False),
        ("MAYA", "Only the light.", "beat", "V.O.", False),
        ("LEO", "Who's there?", "", "O.S.", True),
    ]
    assert first.captions == [
        "MAYA (V.O.): I came back for the light.",
        "MAYA (V.O.): Only the light.",
        "LEO (O.S.): Who's there?",
    ]
    assert first.characters == ["MAYA", "LEO"]
    # The transition is a cut into the next beat; CONT'D is not an extension.
    assert diner.transition == "CUT TO:" and diner.scene == "INT. DINER - DAY"
    assert [(d.speaker, d.extension) for d in diner.dialogue] == [("LEO", "")]
    assert diner.characters == ["LEO"]
    assert end.centered and end.text == "THE END" and not end.dialogue
    assert plan.characters == ["MAYA", "LEO"]


def test_dialogue_never_joins_another_scene_and_long_exchanges_split() -> None:
    lines = "\n\n".join(f"{'AL' if i % 2 else 'BO'}\nLine {i}." for i in range(7))
    plan = plan_script(f"INT. A - DAY\n\nAl waits.\n\nEXT. B - NIGHT\n\n{lines}\n")
    assert [len(b.dialogue) for b in plan.beats] == [0, 3, 3, 1]
    assert plan.beats[1].scene == "EXT. B - NIGHT"
    assert plan.beats[1].text == "Bo and Al talk."
    spoken = [d.text for b in plan.beats for d in b.dialogue]
    assert spoken == [f"Line {i}." for i in range(7)]
    assert plan.beats[0].characters == ["AL"]  # named in the action


def test_caption_round_trip() -> None:
    from storyworld.engine.planner import DialogueLine, parse_caption

    line = DialogueLine("INSPECTOR HALE", "Stop: right there.", extension="V.O.")
    assert parse_caption(line.caption) == line
    assert parse_caption("Thunder rolls.") is None


def test_feature_screenplay_plans_quickly_and_beat_limit_is_a_setting() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "feature_script", Path(__file__).parent.parent / "bench" / "feature_script.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.feature_screenplay(900)
    assert 130_000 < len(text.encode()) < 200_000
    plan = plan_script(text)  # about 0.05 s (bench/feature_bench.py measures it)
    assert 880 <= len(plan.beats) <= 920
    assert plan.title == "THE LAST LIGHT"
    assert sum(len(b.dialogue) for b in plan.beats) > 1000
    with pytest.raises(ScriptError, match=r"maximum is 100 .*MAX_BEATS"):
        plan_script(text, max_beats=100)
