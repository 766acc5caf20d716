"""What each render backend can do: one registry for the engine (routing, refusing at
create time what nothing can render) and the worker (what it advertises).

Pure data, no torch: the engine, the CLI and the console read it without the GPU stack.
A backend's real limits can be narrower than declared here once its model is loaded (a
Wan 2.1 text-to-video checkpoint cannot animate a keyframe); `WanBackend.capabilities()`
and friends report the loaded model's, and the worker advertises those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "CAPABILITIES",
    "Capability",
    "Need",
    "backends_for",
    "capability_of",
    "describe_need",
]


@dataclass(frozen=True)
class Capability:
    """What one backend declares.

    `t2v`: a clip from text alone; `i2v`: a clip from a keyframe (first frame);
    `first_last_frame`: a clip between two given frames; `references`: identity reference
    images condition the output; `keyframe`: stills for the keyframe stage; `voice`: speech
    (the sound stage). `needs_image`: the clip stage cannot start without a keyframe (SVD).
    Frame and fps limits are per clip; `min_vram_gb` feeds the queue's GPU memory classes
    (0 = any worker, CPU included).
    """

    name: str
    t2v: bool = False
    i2v: bool = False
    first_last_frame: bool = False
    references: bool = False
    keyframe: bool = False
    voice: bool = False
    needs_image: bool = False
    max_frames: int = 0  # 0: no limit
    min_fps: int = 1
    max_fps: int = 120
    #: frame counts the model accepts are `frame_multiple * k + 1` (Wan: 4, LTX: 8); the
    #: worker renders the nearest and conforms to the beat's count.
    frame_multiple: int = 1
    size_multiple: int = 8
    min_vram_gb: float = 0.0
    needs_gpu: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "t2v": self.t2v,
            "i2v": self.i2v,
            "first_last_frame": self.first_last_frame,
            "references": self.references,
            "keyframe": self.keyframe,
            "voice": self.voice,
            "needs_image": self.needs_image,
            "max_frames": self.max_frames,
            "fps": [self.min_fps, self.max_fps],
            "min_vram_gb": self.min_vram_gb,
        }

    def narrowed(self, **changes: Any) -> Capability:
        """This capability with some abilities turned off (or limits changed), for a loaded
        model that can do less than the family can."""
        return replace(self, **changes)


#: Every backend's declaration. The animatic does everything a CPU can: its keyframe is
#: its own first frame, its clip starts from any keyframe it is given.
CAPABILITIES: dict[str, Capability] = {
    c.name: c
    for c in (
        Capability("animatic", t2v=True, i2v=True, keyframe=True),
        Capability("animatediff", t2v=True, max_frames=0, min_vram_gb=10, needs_gpu=True),
        Capability(
            "svd", i2v=True, needs_image=True, max_frames=25, min_vram_gb=16, needs_gpu=True
        ),
        Capability("veo", t2v=True, i2v=True, max_frames=0, min_fps=24, max_fps=24),
        # Wan 2.2 TI2V-5B: one model for text and image to video; Wan 2.1 FLF2V adds
        # first-and-last frame. 24 GB runs the 5B at 720p in bf16 with VAE tiling.
        Capability(
            "wan",
            t2v=True,
            i2v=True,
            first_last_frame=True,
            max_frames=121,
            frame_multiple=4,
            size_multiple=32,
            min_vram_gb=24,
            needs_gpu=True,
        ),
        Capability(
            "ltx",
            t2v=True,
            i2v=True,
            first_last_frame=True,
            max_frames=257,
            frame_multiple=8,
            size_multiple=32,
            min_vram_gb=16,
            needs_gpu=True,
        ),
        # SDXL with an IP-Adapter: stills conditioned on the characters' references.
        Capability("keyframe", keyframe=True, references=True, min_vram_gb=12, needs_gpu=True),
    )
}


def capability_of(backend: str) -> Capability | None:
    """The declaration of `backend`, or None for an unknown name."""
    return CAPABILITIES.get(backend)


@dataclass(frozen=True)
class Need:
    """What one job (or stage) asks of a backend."""

    keyframe: bool = False  # it is a keyframe job
    image: bool = False  # a clip from a keyframe (i2v)
    last_frame: bool = False  # a clip that must end on a given frame
    references: bool = False  # identity references must condition the output
    frames: int = 0
    fps: int = 0


def _can(c: Capability, need: Need) -> str | None:
    """None if `c` can do `need`; otherwise why not."""
    if need.keyframe:
        return None if c.keyframe else "it draws no keyframes"
    if need.image and not c.i2v:
        return "it cannot start a clip from a keyframe"
    if not need.image and not c.t2v:
        return "it needs a keyframe to start from"
    if need.last_frame and not c.first_last_frame:
        return "it cannot end a clip on a given frame"
    if need.references and not c.references:
        return "it takes no reference images"
    if need.fps and not c.min_fps <= need.fps <= c.max_fps:
        return f"it renders {c.min_fps}-{c.max_fps} fps, not {need.fps}"
    return None


def backends_for(need: Need, offered: Iterable[str]) -> list[str]:
    """The backends among `offered` (in that order) that can do `need`."""
    out: list[str] = []
    for name in offered:
        c = CAPABILITIES.get(name)
        if c is not None and _can(c, need) is None:
            out.append(name)
    return out


def describe_need(need: Need, backend: str) -> str | None:
    """None if `backend` can do `need`; otherwise a sentence saying why not."""
    c = CAPABILITIES.get(backend)
    if c is None:
        return f"unknown backend {backend!r}"
    why = _can(c, need)
    return f"backend {backend!r} cannot render this: {why}" if why else None
