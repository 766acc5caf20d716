"""The CPU animatic: a storyboard shot for each beat, on any machine.

A background derived from the beat (colours hashed from scene and text, a horizon and a few
shapes), a slow camera move (push-in or pan, chosen from the beat), and the beat's text,
scene heading and captions drawn over it. Deterministic: the same beat draws the same clip.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
from collections.abc import Iterator
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from storyworld.protocol import RenderSpec
from storyworld.worker.backends.base import RenderBackend, RenderContext, RenderOutput

__all__ = ["AnimaticBackend", "draw_frames", "draw_keyframe"]

_OVERSCAN = 1.25


def _digest(spec: RenderSpec) -> bytes:
    seed = "" if spec.seed is None else str(spec.seed)
    return hashlib.sha256(f"{spec.scene}\x00{spec.text}\x00{seed}".encode()).digest()


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _palette(
    d: bytes, scene: str
) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    hue = d[0] / 255.0

    def hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
        i = int(h * 6) % 6
        f = h * 6 - int(h * 6)
        p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
        r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
        return int(r * 255), int(g * 255), int(b * 255)

    night = "NIGHT" in scene.upper() or (not scene and d[1] < 60)
    sky = hsv(hue, 0.45, 0.35 if night else 0.85)
    ground = hsv((hue + 0.33) % 1, 0.5, 0.25 if night else 0.55)
    accent = hsv((hue + 0.55) % 1, 0.7, 0.95)
    return sky, ground, accent


def _background(spec: RenderSpec, w: int, h: int) -> Image.Image:
    d = _digest(spec)
    sky, ground, accent = _palette(d, spec.scene)
    img = Image.new("RGB", (w, h), sky)
    draw = ImageDraw.Draw(img)
    horizon = int(h * (0.5 + (d[2] / 255.0 - 0.5) * 0.3))
    for y in range(horizon):  # vertical gradient sky
        k = y / max(1, horizon)
        draw.line([(0, y), (w, y)], fill=tuple(int(c * (0.7 + 0.3 * k)) for c in sky))
    draw.rectangle([0, horizon, w, h], fill=ground)
    # A sun or moon and a few silhouettes, placed by the digest.
    r = int(min(w, h) * (0.06 + d[3] / 255.0 * 0.06))
    cx, cy = int(w * (0.15 + d[4] / 255.0 * 0.7)), int(horizon * (0.2 + d[5] / 255.0 * 0.4))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=accent)
    for i in range(3 + d[6] % 4):
        bw = int(w * (0.05 + d[7 + i] / 255.0 * 0.12))
        bh = int(h * (0.1 + d[12 + i] / 255.0 * 0.3))
        bx = int(w * (d[17 + i] / 255.0))
        shade = tuple(max(0, c - 40 - 10 * i) for c in ground)
        draw.rectangle([bx, horizon - bh, bx + bw, horizon], fill=shade)
    return img.filter(ImageFilter.GaussianBlur(radius=max(1, w // 400)))


def _overlay(img: Image.Image, spec: RenderSpec, beat_label: str) -> Image.Image:
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    small = _font(max(8, h // 22))
    body = _font(max(9, h // 16))
    pad = max(4, h // 40)
    if spec.scene or beat_label:
        head = " · ".join(x for x in (beat_label, spec.scene) if x)
        draw.rectangle(
            [0, 0, w, pad * 2 + small.size if hasattr(small, "size") else 14], fill=(0, 0, 0, 140)
        )
        draw.text((pad, pad), head, font=small, fill=(255, 255, 255, 255))
    chars = max(12, int(w / max(5, (body.size if hasattr(body, "size") else 10) * 0.55)))
    lines = textwrap.wrap(spec.text, width=chars)[:4]
    captions = [textwrap.shorten(c, width=chars) for c in spec.captions[:2]]
    line_h = (body.size if hasattr(body, "size") else 10) + pad // 2
    block = len(lines) + len(captions)
    top = h - pad - block * line_h - pad
    draw.rectangle([0, top - pad, w, h], fill=(0, 0, 0, 150))
    y = top
    for line in lines:
        draw.text((pad, y), line, font=body, fill=(255, 255, 255, 255))
        y += line_h
    for cap in captions:
        draw.text((pad, y), cap, font=body, fill=(255, 230, 120, 255))
        y += line_h
    return img


def _camera(spec: RenderSpec, t: float) -> tuple[float, float, float]:
    """(zoom, x offset, y offset) at time fraction t in [0, 1]; eased."""
    ease = 0.5 - 0.5 * math.cos(math.pi * t)
    move = _digest(spec)[30] % 3
    if move == 0:  # push in
        return 1.0 + 0.2 * ease, 0.5, 0.5
    if move == 1:  # pan left to right
        return 1.0, 0.1 + 0.8 * ease, 0.5
    return 1.0, 0.9 - 0.8 * ease, 0.45 + 0.1 * ease  # pan right to left, slight tilt


def draw_frames(
    spec: RenderSpec, ctx: RenderContext | None = None, beat_label: str = ""
) -> Iterator[Image.Image]:
    """Yield the clip's frames (exactly `spec.frame_count`, at the spec's size)."""
    w, h = spec.width, spec.height
    big_w, big_h = int(w * _OVERSCAN), int(h * _OVERSCAN)
    canvas = _background(spec, big_w, big_h)
    n = spec.frame_count
    for i in range(n):
        zoom, fx, fy = _camera(spec, i / max(1, n - 1))
        cw, ch = big_w / (_OVERSCAN * zoom), big_h / (_OVERSCAN * zoom)
        cx = fx * (big_w - cw)
        cy = fy * (big_h - ch)
        frame = canvas.resize((w, h), Image.Resampling.BILINEAR, box=(cx, cy, cx + cw, cy + ch))
        yield _overlay(frame, spec, beat_label)
        if ctx is not None:
            ctx.progress(i + 1, n)


def draw_keyframe(spec: RenderSpec) -> Image.Image:
    """The middle frame of the animatic: a storyboard still, and SVD's last-resort
    conditioning image."""
    mid = spec.model_copy(update={"duration_s": 1.0, "fps": 1})
    return next(iter(draw_frames(mid)))


class AnimaticBackend(RenderBackend):
    name = "animatic"
    needs_gpu = False

    def render(self, ctx: RenderContext) -> RenderOutput:
        spec = ctx.job.spec
        label = f"Beat {ctx.job.beat_index + 1}"
        if spec.options.get("stage") == "keyframe":
            return self._keyframe(ctx, label)
        frames = list(draw_frames(spec, ctx, label))
        return RenderOutput(
            fps=spec.fps,
            frames=frames,
            keyframe=frames[len(frames) // 2],
            model_info={"backend": "animatic", "version": 1, "seed": spec.seed},
        )

    def _keyframe(self, ctx: RenderContext, label: str) -> RenderOutput:
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
            image = next(iter(draw_frames(candidate, None, label)))
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
                "version": 1,
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
