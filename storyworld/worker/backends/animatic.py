"""The CPU animatic: a storyboard animatic of each beat, on any machine, deterministically.

What the script says sets what the board shows (see storyworld.worker.previs): the scene
heading the place and light, shot directions the framing and camera move, the beat's
characters as labelled figures (the same colour and shape in every beat), places and props
as pictograms, the dialogue as subtitles timed to the voice stage's speech, the speaker
marked while their line plays. The same beat draws the same clip.
"""

from __future__ import annotations

from collections.abc import Iterator

from PIL import Image

from storyworld.protocol import RenderSpec
from storyworld.subtitles import Cue
from storyworld.worker.backends.base import RenderBackend, RenderContext, RenderOutput
from storyworld.worker.previs.board import plan_board, render_frames

__all__ = ["AnimaticBackend", "draw_frames", "draw_keyframe", "estimated_cues"]

#: Bumped whenever the drawing changes, so cached clips of an older look are not reused.
VERSION = 2


def estimated_cues(spec: RenderSpec) -> list[Cue]:
    """Cues spread over the beat by word count, for when there is no speech (a keyframe,
    or a worker without the voice stage)."""
    lines = spec.dialogue
    if not lines:
        return []
    words = [max(1, len(line.text.split())) for line in lines]
    usable = spec.duration_s * 0.9
    t = spec.duration_s * 0.05
    cues = []
    for line, n in zip(lines, words, strict=True):
        span = usable * n / sum(words)
        cues.append(Cue(t, t + span * 0.92, line.speaker, line.text))
        t += span
    return cues


def _shot_number(ctx: RenderContext | None, beat_label: str) -> int:
    if ctx is not None:
        return ctx.job.beat_index + 1
    digits = "".join(ch for ch in beat_label if ch.isdigit())
    return int(digits) if digits else 1


def draw_frames(
    spec: RenderSpec,
    ctx: RenderContext | None = None,
    beat_label: str = "",
    cues: list[Cue] | None = None,
) -> Iterator[Image.Image]:
    """Yield the clip's frames (exactly `spec.frame_count`, at the spec's size)."""
    characters = list(spec.characters) or list(dict.fromkeys(d.speaker for d in spec.dialogue))
    board = plan_board(
        spec.text,
        spec.scene,
        characters,
        spec.character_notes,
        shot_number=_shot_number(ctx, beat_label),
        centered=bool(spec.options.get("centered")),
    )
    if cues is None:
        cues = estimated_cues(spec)
    burn = spec.options.get("previs_subtitles", True) is not False
    n = spec.frame_count
    for i, frame in enumerate(
        render_frames(board, spec.width, spec.height, n, spec.fps, cues, subtitles=burn)
    ):
        yield frame
        if ctx is not None:
            ctx.progress(i + 1, n)


def draw_keyframe(spec: RenderSpec) -> Image.Image:
    """The middle frame of the animatic: a storyboard still, and SVD's last-resort
    conditioning image."""
    frames = list(draw_frames(spec.model_copy(update={"fps": 1, "duration_s": 3.0})))
    return frames[1]


class AnimaticBackend(RenderBackend):
    name = "animatic"
    needs_gpu = False

    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        if spec.options.get("stage") == "keyframe":
            return self._keyframe(ctx)
        speech = getattr(ctx, "speech", None)
        cues = list(speech.cues) if speech is not None else None
        frames = list(draw_frames(spec, ctx, cues=cues))
        return RenderOutput(
            fps=spec.fps,
            frames=frames,
            keyframe=frames[len(frames) // 2],
            model_info={"backend": "animatic", "version": VERSION, "seed": spec.seed},
        )

    def _keyframe(self, ctx: RenderContext) -> RenderOutput:
        """The keyframe stage on the CPU: the animatic's own first frame, one per candidate
        seed, scored against the references by a CPU stand-in for the image encoder (the
        cosine of 16x16 colour thumbnails), so the whole film flow runs without a GPU."""
        from storyworld.worker.backends.video import fetch_image, reference_keys, wanted_candidates

        spec = ctx.job.spec
        count = wanted_candidates(spec)
        refs = [_thumb(fetch_image(ctx, k, "reference")) for k in reference_keys(spec)]
        target = [sum(col) / len(refs) for col in zip(*refs, strict=True)] if refs else None
        base = spec.seed or 0
        first = spec.model_copy(update={"duration_s": 1.0, "fps": 1})
        images, scores = [], []
        for i in range(count):
            candidate = first.model_copy(update={"seed": base + i})
            image = next(iter(draw_frames(candidate, None)))
            images.append(image)
            scores.append(_cosine(_thumb(image), target) if target else None)
            ctx.progress(i + 1, count)
        best = max(range(count), key=lambda i: scores[i] or 0.0) if target else 0
        return RenderOutput(
            fps=spec.fps,
            frames=[images[best]],
            keyframe=images[best],
            model_info={
                "backend": "animatic",
                "version": VERSION,
                "stage": "keyframe",
                "seed": base + best,
                "candidates": [{"seed": base + i, "score": scores[i]} for i in range(count)],
                "chosen": best,
                "score": scores[best],
                "reference_keys": reference_keys(spec),
            },
        )


def _thumb(image: Image.Image) -> list[float]:
    small = image.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
    return [float(v) for v in small.tobytes()]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(y * y for y in b) ** 0.5
    return round(dot / (na * nb), 6) if na and nb else 0.0
