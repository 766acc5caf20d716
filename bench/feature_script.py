"""A feature-length Fountain screenplay, generated deterministically for tests and benches.

    python bench/feature_script.py > /tmp/feature.fountain      # ~150 KB, ~900 beats

It uses what real screenplays use: a title page, sections and synopses, scene headings
with numbers and times of day, shot directions, transitions, emphasis, notes, boneyard,
parentheticals, V.O./O.S. extensions, dual dialogue and centered text.
"""

from __future__ import annotations

import random
import sys

__all__ = ["feature_screenplay"]

_PLACES = [
    ("EXT.", "LIGHTHOUSE"),
    ("INT.", "DINER"),
    ("EXT.", "HARBOUR"),
    ("INT.", "POLICE STATION"),
    ("EXT.", "FOREST ROAD"),
    ("INT.", "APARTMENT"),
    ("EXT.", "BEACH"),
    ("INT.", "HOSPITAL CORRIDOR"),
    ("EXT.", "CITY STREET"),
    ("INT.", "TRAIN CARRIAGE"),
]
_TIMES = ["DAY", "NIGHT", "DUSK", "DAWN", "DAY", "NIGHT"]
_CAST = ["MAYA", "LEO", "INSPECTOR HALE", "ROSA"]
_SHOTS = ["CLOSE ON", "WIDE", "ANGLE ON", "INSERT", "PUSH IN on", "PULL BACK from", "PAN to"]
_PROPS = [
    "a phone buzzing on the table",
    "a boat rocking against the pier",
    "storm clouds over the sea",
    "a car idling with its lights on",
    "a lantern swinging in the wind",
    "a letter on the floor",
    "a cup of coffee going cold",
    "a dog barking at the gate",
    "rain hammering the window",
    "a key turning in a lock",
]
_MOODS = [
    "Nobody moves.",
    "The wind picks up and the shutters rattle.",
    "A long silence; somewhere a radio plays an old song.",
    "Footsteps on the stairs, then nothing.",
    "The light sweeps across the room and is gone.",
]
_LINES = [
    "We don't have much time.",
    "I told you, I wasn't there that night.",
    "Then who was?",
    "Look at the water. Something's wrong.",
    "You should have called me.",
    "It's *always* the quiet ones.",
    "Keep the light burning. Whatever happens.",
    "I can't do this again.",
    "Give me the key.",
    "Did you hear that?",
    "The boat left at midnight.",
    "Nobody leaves this town.",
]


def feature_screenplay(beats: int = 900, seed: int = 7) -> str:
    """A screenplay of about `beats` beats (about 160 bytes of Fountain per beat)."""
    rng = random.Random(seed)
    out = [
        "Title: **THE LAST LIGHT**",
        "Credit: written by",
        "Author: StoryWorld Bench",
        "Draft date: 1 December 2026",
        "Contact:",
        "    bench@storyworld.invalid",
        "",
    ]
    planned = 0
    scene_no = 0
    act = 0
    while planned < beats:
        if scene_no % 12 == 0:
            act += 1
            out += [f"# ACT {act}", "", f"= The light changes hands, part {act}.", ""]
        scene_no += 1
        ie, place = rng.choice(_PLACES)
        time = rng.choice(_TIMES)
        out += [f"{ie} {place} - {time} #{scene_no}#", ""]
        cast = rng.sample(_CAST, 2)
        for k in range(rng.randint(3, 5)):
            if planned >= beats:
                break
            shot = rng.choice(_SHOTS)
            who = cast[k % 2].title()
            prop = rng.choice(_PROPS)
            mood = rng.choice(_MOODS) if rng.random() < 0.6 else ""
            out += [
                f"{shot} {who}. _{prop.capitalize()}_ [[check continuity]]. {mood}".rstrip(),
                "",
            ]
            planned += 1
            if rng.random() < 0.8 and planned < beats:
                speaker = cast[k % 2]
                ext = rng.choice(["", "", "", " (V.O.)", " (O.S.)"])
                paren = rng.choice(["", "", "(quietly)", "(beat)"])
                out += [f"{speaker}{ext}"] + ([paren] if paren else []) + [rng.choice(_LINES), ""]
                other = cast[(k + 1) % 2]
                dual = " ^" if rng.random() < 0.05 else ""
                out += [f"{other}{dual}", rng.choice(_LINES), ""]
                if rng.random() < 0.3:
                    out += [f"{speaker} (CONT'D)", rng.choice(_LINES), ""]
        if rng.random() < 0.4:
            out += [rng.choice(["CUT TO:", "> FADE OUT.", "DISSOLVE TO:"]), ""]
        if scene_no % 25 == 0:
            out += ["/* a scene the editor cut", "", "MAYA", "Never mind. */", ""]
    out += ["> THE END <", ""]
    return "\n".join(out)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 900
    sys.stdout.write(feature_screenplay(n))
