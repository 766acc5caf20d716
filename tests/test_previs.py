"""The CPU previs: what the script says is what the board shows."""

from __future__ import annotations

import numpy as np
import pytest

from storyworld.engine.planner import plan_script
from storyworld.protocol import RenderSpec, SpokenLine
from storyworld.worker.backends.animatic import draw_frames
from storyworld.worker.previs.icons import emoji_font_path, find_pictograms
from storyworld.worker.previs.look import figure_look
from storyworld.worker.previs.staging import read_place, read_shot

SCRIPT = """Title: Two Scenes

EXT. HARBOUR - DAY

WIDE on the harbour. Maya waits by the boat.

CLOSE ON Maya.

MAYA
He's late.

EXT. HARBOUR - NIGHT

WIDE on the harbour. Maya waits by the boat.

INT. DINER - DAY

ANGLE ON Maya and Leo over coffee.

LEO
You came back.
"""


def _specs() -> list[RenderSpec]:
    plan = plan_script(SCRIPT)
    return [
        RenderSpec(
            text=b.text,
            scene=b.scene,
            duration_s=1.0,
            width=256,
            height=144,
            fps=4,
            dialogue=[SpokenLine(speaker=d.speaker, text=d.text) for d in b.dialogue],
            characters=b.characters,
        )
        for b in plan.beats
    ]


def _frames(spec: RenderSpec) -> list[np.ndarray]:
    return [np.asarray(f.convert("RGB")) for f in draw_frames(spec)]


def _colour_pixels(frames: list[np.ndarray], colour: tuple[int, int, int]) -> int:
    return int(np.mean([np.all(f == np.array(colour), axis=-1).sum() for f in frames]))


def test_scene_heading_and_shot_directions_are_read() -> None:
    assert read_place("INT. DINER - NIGHT").interior
    assert read_place("EXT. LIGHTHOUSE - DUSK") == read_place("EXT. LIGHTHOUSE - DUSK")
    assert read_place("EXT. LIGHTHOUSE - DUSK").time == "DUSK"
    assert read_place("EXT. BEACH - MORNING").time == "DAWN"
    assert read_place("EXT. ROAD").time == "DAY"
    assert read_shot("CLOSE ON Maya, shaking.", ["MAYA"]).framing == "close"
    assert read_shot("CLOSE ON Maya, shaking.", ["MAYA"]).subject == "MAYA"
    assert read_shot("We PUSH IN on the door.", []).move == "push_in"
    assert read_shot("PULL BACK to reveal the town.", []).move == "pull_back"
    assert read_shot("TRACKING with Leo.", ["LEO"]).move == "tracking"
    assert read_shot("INSERT the key.", []).framing == "insert"
    assert read_shot("She is a close friend.", ["MAYA"]).framing == "medium"  # default
    assert read_shot("The sea.", []).framing == "wide"  # default with nobody in it
    words = [p.word for p in find_pictograms("A storm over the lighthouse; a boat, a phone.")]
    assert words == ["STORM", "LIGHTHOUSE", "BOAT", "PHONE"]


def test_frames_are_exact_and_deterministic() -> None:
    spec = _specs()[0]
    a, b = _frames(spec), _frames(spec)
    assert len(a) == spec.frame_count == 4
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (144, 256, 3)


def test_night_is_darker_than_day() -> None:
    day, night = _specs()[0], _specs()[2]
    assert day.text == night.text and "NIGHT" in night.scene
    assert np.mean(_frames(night)) < 0.6 * np.mean(_frames(day))


def test_close_on_draws_its_character_larger_than_wide() -> None:
    wide, close = _specs()[0], _specs()[1]
    colour = figure_look("MAYA").colour
    wide_px = _colour_pixels(_frames(wide), colour)
    close_px = _colour_pixels(_frames(close), colour)
    assert wide_px > 50  # she is in the wide shot
    assert close_px > 4 * wide_px


def test_same_character_same_colour_in_two_scenes() -> None:
    harbour, diner = _specs()[0], _specs()[3]
    assert harbour.scene != diner.scene
    maya, leo = figure_look("MAYA"), figure_look("LEO")
    assert maya.colour != leo.colour
    assert _colour_pixels(_frames(harbour), maya.colour) > 50
    assert _colour_pixels(_frames(diner), maya.colour) > 50
    assert _colour_pixels(_frames(diner), leo.colour) > 50
    assert _colour_pixels(_frames(harbour), leo.colour) == 0  # Leo is not at the harbour
    # The cast's description names a colour: that one is used, in every scene.
    assert figure_look("Mara", "old keeper, yellow oilskin").colour == (236, 200, 40)


def test_speaker_is_marked_while_their_line_plays() -> None:
    from storyworld.subtitles import Cue

    spec = _specs()[3].model_copy(update={"duration_s": 2.0})
    cues = [Cue(0.0, 1.0, "LEO", "You came back.")]
    frames = [np.asarray(f) for f in draw_frames(spec, cues=cues)]
    speaking, silent = frames[0], frames[-1]
    marker = np.all(speaking == np.array([255, 236, 80]), axis=-1).sum()
    assert marker > 20 and np.all(silent == np.array([255, 236, 80]), axis=-1).sum() == 0


@pytest.mark.skipif(emoji_font_path() is None, reason="fonts-noto-color-emoji not installed")
def test_pictograms_come_from_the_emoji_font() -> None:
    from storyworld.worker.previs.icons import pictogram_image

    boat = np.asarray(pictogram_image("\u26f5", "BOAT", 64))
    assert boat.shape[0] == 64
    # A colour glyph, not the fallback card with a word on it.
    assert len(np.unique(boat.reshape(-1, 4)[:, :3], axis=0)) > 50
