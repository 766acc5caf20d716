"""Reference storyboard frames for the README: the middle frame of each beat of the
lighthouse example, as the CPU animatic draws it.

    PYTHONPATH=. python bench/previs_frames.py docs/previs
"""

from __future__ import annotations

import sys
from pathlib import Path

from storyworld.engine.planner import plan_file
from storyworld.protocol import RenderSpec, SpokenLine
from storyworld.worker.backends.animatic import draw_frames


def main(out: str = "docs/previs") -> None:
    here = Path(__file__).resolve().parent.parent
    plan = plan_file(here / "storyworld" / "examples" / "lighthouse.fountain")
    Path(out).mkdir(parents=True, exist_ok=True)
    for b in plan.beats:
        spec = RenderSpec(
            text=b.text,
            scene=b.scene,
            duration_s=b.duration_s,
            width=512,
            height=288,
            fps=4,
            dialogue=[SpokenLine(speaker=d.speaker, text=d.text) for d in b.dialogue],
            characters=b.characters,
            options={"centered": b.centered},
        )
        frames = list(draw_frames(spec, beat_label=f"Beat {b.index + 1}"))
        frames[len(frames) // 3].save(Path(out) / f"beat-{b.index + 1:02d}.png", optimize=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
