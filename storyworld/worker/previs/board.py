"""Drawing a storyboard panel and its camera move.

A panel is laid out once per beat on a canvas larger than the frame (the camera moves
inside it): the place (sky and ground outside, wall, window and floor inside, in the
light of the time of day), the pictograms of the places and props the beat names, and
its characters as labelled figures framed as the shot asks. The speaker of the line that
plays is marked (outlined, with a speech mark and a lit name tag); a variant of the
canvas is drawn per speaker. The header (shot number, framing and move, scene) and the
subtitle of the line that plays are drawn on each frame.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from storyworld.subtitles import Cue
from storyworld.worker.previs.icons import Pictogram, find_pictograms, pictogram_image
from storyworld.worker.previs.look import (
    FigureLook,
    Light,
    figure_look,
    ground_colour,
    light_for,
)
from storyworld.worker.previs.staging import Place, Shot, read_place, read_shot

__all__ = ["Board", "plan_board", "render_frames"]

#: The canvas is this much larger than the frame; a zoom of 1 shows all of it.
OVERSCAN = 1.3
MAX_ZOOM = 1.3


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(6, size))
    except (TypeError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


@dataclass(frozen=True)
class Board:
    """Everything a beat's panel shows, decided from its words (see `plan_board`)."""

    place: Place
    shot: Shot
    figures: tuple[FigureLook, ...]
    pictograms: tuple[Pictogram, ...]
    place_pictogram: Pictogram | None
    shot_number: int
    scene: str
    text: str
    centered: bool = False


def plan_board(
    text: str,
    scene: str,
    characters: list[str],
    notes: dict[str, str] | None = None,
    shot_number: int = 1,
    centered: bool = False,
) -> Board:
    place = read_place(scene, text)
    place_icons = find_pictograms(place.location, limit=1)
    props = [
        p for p in find_pictograms(text, limit=8) if p.glyph not in {i.glyph for i in place_icons}
    ]
    if any(p.word.startswith("STORM") for p in props):  # a storm is already a cloud
        props = [p for p in props if not p.word.startswith("CLOUD")]
    shot = read_shot(text, characters, props=[p.word for p in props])
    if shot.framing == "insert" and not props:
        # An insert needs a thing to show: the place's, else a close shot of the subject.
        if place_icons:
            props = list(place_icons)
        elif characters:
            shot = dataclasses.replace(shot, framing="close")
    notes = {k.upper(): v for k, v in (notes or {}).items()}
    figures = tuple(figure_look(c, notes.get(c.upper(), "")) for c in characters[:5])
    return Board(
        place=place,
        shot=shot,
        figures=figures,
        pictograms=tuple(props[:4]),
        place_pictogram=place_icons[0] if place_icons else None,
        shot_number=shot_number,
        scene=scene,
        text=text,
        centered=centered,
    )


def _shade(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return (min(255, int(c[0] * k)), min(255, int(c[1] * k)), min(255, int(c[2] * k)))


def _gradient(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], top, bottom) -> None:  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = box
    span = max(1, y1 - y0)
    for y in range(y0, y1):
        k = (y - y0) / span
        draw.line(
            [(x0, y), (x1, y)],
            fill=tuple(int(a + (b - a) * k) for a, b in zip(top, bottom, strict=True)),
        )


def _backdrop(board: Board, w: int, h: int, light: Light) -> tuple[Image.Image, int]:
    """The place, without figures or props. Returns the image and the horizon's y."""
    img = Image.new("RGB", (w, h), light.sky_bottom)
    d = ImageDraw.Draw(img)
    ground = ground_colour(board.place.location, board.place.interior)
    framing = board.shot.framing
    horizon = int(h * {"wide": 0.62, "medium": 0.7, "close": 0.78, "insert": 0.72}[framing])
    if board.place.interior:
        d.rectangle([0, 0, w, horizon], fill=light.wall)
        # A window onto the sky says the time of day indoors too.
        wx0, wy0, wx1, wy1 = int(w * 0.62), int(h * 0.12), int(w * 0.86), int(h * 0.42)
        _gradient(d, (wx0, wy0, wx1, wy1), light.sky_top, light.sky_bottom)
        frame = _shade(light.wall, 0.55)
        d.rectangle([wx0, wy0, wx1, wy1], outline=frame, width=max(2, w // 120))
        d.line(
            [((wx0 + wx1) // 2, wy0), ((wx0 + wx1) // 2, wy1)], fill=frame, width=max(1, w // 200)
        )
        d.rectangle([0, horizon - max(2, h // 60), w, horizon], fill=_shade(light.wall, 0.7))
        _gradient(d, (0, horizon, w, h), _shade(ground, 0.95), _shade(ground, 0.7))
    else:
        _gradient(d, (0, 0, w, horizon), light.sky_top, light.sky_bottom)
        _gradient(d, (0, horizon, w, h), ground, _shade(ground, 0.72))
        body = "\U0001f319" if board.place.time == "NIGHT" else "\u2600\ufe0f"
        if board.place.time in ("DUSK", "DAWN"):
            body = "\U0001f305"
        size = int(h * 0.12)
        icon = pictogram_image(body, "MOON" if board.place.time == "NIGHT" else "SUN", size)
        img.paste(icon, (int(w * 0.1), int(h * 0.08)), icon)
    return img, horizon


def _paste_icon(img: Image.Image, p: Pictogram, cx: int, bottom: int, size: int) -> None:
    icon = pictogram_image(p.glyph, p.word, size)
    img.paste(icon, (cx - icon.width // 2, bottom - icon.height), icon)


@dataclass(frozen=True)
class _Placed:
    look: FigureLook
    cx: int
    top: int
    height: int
    #: Which way the figure looks: -1 left, 1 right, 0 at the camera.
    facing: int = 0


def _layout(board: Board, w: int, h: int, horizon: int) -> list[_Placed]:
    """Where each figure stands and how tall it is, for the shot's framing."""
    framing, figures = board.shot.framing, list(board.figures)
    if framing == "insert":
        return []
    if framing == "close":
        want = board.shot.subject
        subject = next((f for f in figures if f.name == want), figures[0] if figures else None)
        figures = [subject] if subject else []
    n = len(figures)
    if not n:
        return []
    height = {"wide": 0.36, "medium": 0.95, "close": 1.9}[framing] * h
    top = {"wide": horizon - height * 0.86, "medium": h * 0.2, "close": h * 0.17}[framing]
    spread = {"wide": 0.64, "medium": 0.7, "close": 0.0}[framing]
    out = []
    for i, look in enumerate(figures):
        cx = w / 2 if n == 1 else w / 2 + (i / (n - 1) - 0.5) * spread * w
        if n == 1 and framing == "wide":
            cx = w * 0.3  # beside the place, not in front of it
        facing = 0 if n == 1 else (1 if cx < w / 2 else -1)
        out.append(_Placed(look, int(cx), int(top), int(height), facing))
    return out


def _figure(d: ImageDraw.ImageDraw, p: _Placed, speaking: bool, line_w: int) -> None:
    """A storyboard figure: head, shoulders and body in the character's colour, inked."""
    look, H, cx, top = p.look, p.height, p.cx, p.top
    r = int(H * 0.1)
    head_c = (cx, top + r)
    ink = look.ink
    body_top = top + int(H * 0.21)
    body_bottom = top + int(H * 0.62)
    half = int(H * 0.16)
    if look.body == "dress":
        shape = [(cx - half * 0.6, body_top), (cx + half * 0.6, body_top)]
        shape += [(cx + half * 1.25, body_bottom), (cx - half * 1.25, body_bottom)]
    elif look.body == "suit":
        shape = [(cx - half, body_top), (cx + half, body_top)]
        shape += [(cx + half, body_bottom), (cx - half, body_bottom)]
    elif look.body == "round":
        shape = [
            (
                cx + half * 1.15 * math.cos(a),
                (body_top + body_bottom) / 2 + (body_bottom - body_top) / 2 * math.sin(a),
            )
            for a in [k * math.pi / 12 for k in range(24)]
        ]
    else:  # coat: wide shoulders, narrowing
        shape = [(cx - half * 1.15, body_top), (cx + half * 1.15, body_top)]
        shape += [(cx + half * 0.8, body_bottom), (cx - half * 0.8, body_bottom)]
    # A shadow on the ground under the feet says where the figure stands.
    feet = top + H
    d.ellipse(
        [cx - half * 1.4, feet - H * 0.025, cx + half * 1.4, feet + H * 0.025],
        fill=(0, 0, 0, 70),
    )
    leg_w = max(2, int(H * 0.06))
    for dx in (-half * 0.45, half * 0.45):
        d.rectangle(
            [cx + dx - leg_w / 2, body_bottom - 2, cx + dx + leg_w / 2, top + H],
            fill=_shade(look.colour, 0.6),
            outline=ink,
            width=max(1, line_w // 2),
        )
    d.polygon(shape, fill=look.colour, outline=ink, width=line_w)
    d.rounded_rectangle(
        [cx - r * 0.45, top + r * 1.8, cx + r * 0.45, body_top + 2], radius=2, fill=(232, 200, 170)
    )
    skin = (240, 210, 180)
    if speaking:
        glow = max(3, int(H * 0.02))
        d.ellipse(
            [
                head_c[0] - r - glow,
                head_c[1] - r - glow,
                head_c[0] + r + glow,
                head_c[1] + r + glow,
            ],
            outline=(255, 236, 80),
            width=glow,
        )
    d.ellipse(
        [head_c[0] - r, head_c[1] - r, head_c[0] + r, head_c[1] + r],
        fill=skin,
        outline=ink,
        width=line_w,
    )
    hx, hy = head_c
    # A face: eyes turned the way the figure looks, a mouth open while it speaks.
    ex = p.facing * r * 0.18
    eye = max(1, r // 7)
    for side in (-0.38, 0.38):
        x, y = hx + side * r + ex, hy - r * 0.05
        d.ellipse([x - eye, y - eye, x + eye, y + eye], fill=ink)
    mx, my = hx + ex, hy + r * 0.45
    if speaking:
        d.ellipse([mx - r * 0.2, my - r * 0.13, mx + r * 0.2, my + r * 0.13], fill=ink)
    else:
        d.line([(mx - r * 0.2, my), (mx + r * 0.2, my)], fill=ink, width=max(1, line_w // 2))
    if look.head == "hat":
        d.rectangle([hx - r * 1.3, hy - r * 0.75, hx + r * 1.3, hy - r * 0.55], fill=ink)
        d.rectangle([hx - r * 0.75, hy - r * 1.45, hx + r * 0.75, hy - r * 0.6], fill=ink)
    elif look.head == "cap":
        d.chord(
            [hx - r, hy - r * 1.05, hx + r, hy + r * 0.3],
            180,
            360,
            fill=look.colour,
            outline=ink,
            width=line_w,
        )
    elif look.head == "bun":
        d.ellipse([hx - r * 0.45, hy - r * 1.7, hx + r * 0.45, hy - r * 0.8], fill=ink)
        d.chord([hx - r, hy - r, hx + r, hy + r * 0.2], 180, 360, fill=ink)
    if speaking:  # a speech mark beside the head
        sx = hx + int(r * 1.5)
        sy = hy - int(r * 0.9)
        br = max(4, int(r * 0.55))
        d.ellipse(
            [sx, sy - br, sx + br * 2.2, sy + br],
            fill=(255, 255, 255),
            outline=ink,
            width=max(1, line_w // 2),
        )
        d.polygon(
            [
                (sx + br * 0.4, sy + br * 0.6),
                (sx - br * 0.3, sy + br * 1.5),
                (sx + br, sy + br * 0.8),
            ],
            fill=(255, 255, 255),
        )
        for k in range(3):
            dot = max(1, br // 5)
            x = sx + br * (0.55 + k * 0.55)
            d.ellipse([x - dot, sy - dot, x + dot, sy + dot], fill=ink)


def _tag(d: ImageDraw.ImageDraw, p: _Placed, speaking: bool, h: int) -> None:
    """The character's name on a tag under the face, lit while they speak."""
    font = _font(max(9, h // 22))
    label = p.look.name.title()
    below_feet = p.top + p.height + max(2, h // 80)
    y = below_feet if below_feet < h * 0.8 else p.top + int(p.height * 0.25)
    y = min(h - h // 10, y)
    y = max(int(h * 0.14), y)
    box = d.textbbox((p.cx, y), label, font=font, anchor="mt")
    pad = max(2, h // 120)
    box = (box[0] - pad * 2, box[1] - pad, box[2] + pad * 2, box[3] + pad)
    fill = p.look.colour if speaking else (20, 20, 24)
    d.rounded_rectangle(box, radius=pad * 2, fill=fill, outline=(255, 255, 255), width=1)
    d.text((p.cx, y), label, font=font, fill=(255, 255, 255), anchor="mt")


def _props(
    img: Image.Image,
    props: list[Pictogram],
    framing: str,
    horizon: int,
    figures: bool,
    interior: bool = False,
) -> None:
    """Weather and birds in the sky (indoors: seen through the window), boats on the
    water at the horizon, everything else in front along the ground, away from the centre
    where the figures stand."""
    w, h = img.size
    if interior:
        sky = [p for p in props if p.where == "sky"][:1]
        props = [p for p in props if p.where != "sky"]
        for p in sky:  # the window spans x 0.62-0.86, y 0.12-0.42
            _paste_icon(img, p, int(w * 0.74), int(h * 0.39), int(h * 0.22))
    size = int(h * {"wide": 0.16, "medium": 0.2, "close": 0.22, "insert": 0.18}[framing])
    ground_x = iter([0.12, 0.88, 0.3, 0.7] if figures else [0.3, 0.7, 0.5, 0.15])
    sky_x = iter([0.4, 0.62, 0.25, 0.8])
    float_x = iter([0.25, 0.6, 0.4, 0.75])
    for p in props:
        if p.where == "sky":
            _paste_icon(img, p, int(w * next(sky_x)), int(h * 0.32), int(size * 1.2))
        elif p.where == "afloat":
            _paste_icon(img, p, int(w * next(float_x)), horizon + size // 4, size)
        else:
            _paste_icon(img, p, int(w * next(ground_x)), int(h * 0.86), size)


def _panel(board: Board, w: int, h: int, speaker: str) -> Image.Image:
    light = light_for(board.place.time)
    img, horizon = _backdrop(board, w, h, light)
    framing = board.shot.framing
    if board.place_pictogram is not None and framing != "insert":
        size = int(h * {"wide": 0.42, "medium": 0.36, "close": 0.3}[framing])
        cx = int(w * (0.5 if framing == "wide" or not board.figures else 0.8))
        _paste_icon(img, board.place_pictogram, cx, horizon + size // 12, size)
    props = list(board.pictograms)
    if framing == "insert" and props:
        want = board.shot.subject
        hero = next((p for p in props if p.word == want), props[0])
        _paste_icon(img, hero, w // 2, int(h * 0.82), int(h * 0.6))
        props = []
    _props(img, props, framing, horizon, bool(board.figures), board.place.interior)
    d = ImageDraw.Draw(img, "RGBA")
    placed = _layout(board, w, h, horizon)
    line_w = max(2, h // 140)
    for p in placed:
        _figure(d, p, p.look.name == speaker, line_w)
    for p in placed:
        _tag(d, p, p.look.name == speaker, h)
    brightness = light.brightness
    if board.place.interior and board.place.time == "NIGHT":
        brightness = 0.55  # lamplight: dark, but a face still reads
    if brightness < 1.0:
        img = Image.eval(img, lambda v: int(v * brightness))
    return img


def _camera(shot: Shot, t: float) -> tuple[float, float]:
    """(zoom, horizontal position 0..1) at time fraction t, eased."""
    e = 0.5 - 0.5 * math.cos(math.pi * t)
    if shot.move == "push_in":
        return 1.0 + (MAX_ZOOM - 1.0) * e, 0.5
    if shot.move == "pull_back":
        return MAX_ZOOM - (MAX_ZOOM - 1.0) * e, 0.5
    if shot.move == "pan_left":
        return 1.2, 1.0 - e
    if shot.move in ("pan_right", "tracking"):
        return 1.2, e
    return 1.0, 0.5


def _header(img: Image.Image, board: Board) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    font = _font(max(8, h // 24))
    small = _font(max(7, h // 30))
    pad = max(3, h // 60)
    bar = pad * 2 + max(8, h // 24)
    d.rectangle([0, 0, w, bar], fill=(0, 0, 0, 150))
    d.text((pad, pad), f"{board.shot_number}  {board.shot.label}", font=font, fill=(255, 255, 255))
    d.text((w - pad, pad), board.scene[:60], font=font, fill=(220, 220, 220), anchor="ra")
    size = max(7, h // 30)
    # A tiny frame still gets a (very) short note: textwrap refuses a width under 1.
    note = textwrap.shorten(board.text, width=max(2, int(w / (size * 0.5))), placeholder="…")
    d.rectangle([0, bar, w, bar + size + pad], fill=(0, 0, 0, 100))
    d.text((pad, bar + pad // 2), note, font=small, fill=(255, 255, 255, 235))


def _arrow(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], w: int) -> None:
    """A line from a to b with a head at b, white over a dark edge (reads on any frame)."""
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    size = w * 3.2
    head = [
        b,
        (b[0] - size * math.cos(ang - 0.5), b[1] - size * math.sin(ang - 0.5)),
        (b[0] - size * math.cos(ang + 0.5), b[1] - size * math.sin(ang + 0.5)),
    ]
    for colour, width in (((0, 0, 0, 150), w + 2), ((255, 255, 255, 220), w)):
        d.line([a, b], fill=colour, width=width)
        d.polygon(head, fill=colour)


def _move_marks(img: Image.Image, shot: Shot) -> None:
    """The camera move drawn on the board, as storyboard artists do: arrows from the
    corners inward for a push in, outward for a pull back, across the top for a pan."""
    if shot.move == "static":
        return
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    lw = max(2, h // 80)
    if shot.move in ("push_in", "pull_back"):
        for sx, sy in ((0, 0), (1, 0), (0, 1), (1, 1)):
            outer = (w * (0.025 + 0.95 * sx), h * (0.17 + 0.62 * sy))
            inner = (w * (0.075 + 0.85 * sx), h * (0.25 + 0.46 * sy))
            a, b = (outer, inner) if shot.move == "push_in" else (inner, outer)
            _arrow(d, a, b, lw)
        return
    y = h * 0.155
    left, right = (w * 0.38, y), (w * 0.62, y)
    _arrow(d, right, left, lw) if shot.move == "pan_left" else _arrow(d, left, right, lw)


def _subtitle(img: Image.Image, cue: Cue, colour: tuple[int, int, int] | None) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    font = _font(max(9, h // 17))
    pad = max(3, h // 50)
    chars = max(16, int(w / (max(9, h // 17) * 0.52)))
    lines = textwrap.wrap(f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text, width=chars)[
        :3
    ]
    line_h = max(9, h // 17) + pad // 2
    top = h - pad * 2 - line_h * len(lines)
    d.rectangle([0, top - pad, w, h], fill=(0, 0, 0, 170))
    y = top
    for i, line in enumerate(lines):
        x = pad * 2
        if i == 0 and cue.speaker and line.startswith(cue.speaker + ":"):
            name = cue.speaker + ":"
            d.text((x, y), name, font=font, fill=colour or (255, 230, 120))
            x += int(d.textlength(name + " ", font=font))
            line = line[len(name) :].lstrip()
        d.text((x, y), line, font=font, fill=(255, 255, 255))
        y += line_h


def _title_card(board: Board, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), (8, 8, 10))
    d = ImageDraw.Draw(img)
    font = _font(max(12, h // 9))
    lines = textwrap.wrap(board.text, width=24)[:4]
    y = h // 2 - len(lines) * (h // 9) // 2
    for line in lines:
        d.text((w // 2, y), line, font=font, fill=(240, 240, 240), anchor="mt")
        y += h // 9 + 4
    return img


def render_frames(
    board: Board,
    width: int,
    height: int,
    n_frames: int,
    fps: float,
    cues: list[Cue],
    *,
    subtitles: bool = True,
) -> Iterator[Image.Image]:
    """The beat's frames. `cues` (times within the beat) say who speaks when."""
    if board.centered:
        card = _title_card(board, width, height)
        for _ in range(n_frames):
            yield card.copy()
        return
    cw, ch = round(width * OVERSCAN), round(height * OVERSCAN)
    canvases: dict[str, Image.Image] = {}
    looks = {f.name: f for f in board.figures}
    for i in range(n_frames):
        t = i / fps
        cue = next((c for c in cues if c.start_s <= t < c.end_s), None)
        speaker = cue.speaker.upper() if cue else ""
        if speaker not in canvases:
            canvases[speaker] = _panel(board, cw, ch, speaker)
        zoom, pos = _camera(board.shot, i / max(1, n_frames - 1))
        vw, vh = cw / zoom, ch / zoom
        x0 = (cw - vw) * pos
        y0 = (ch - vh) * (0.35 if board.shot.move == "push_in" else 0.5)
        frame = canvases[speaker].resize(
            (width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + vw, y0 + vh)
        )
        _header(frame, board)
        _move_marks(frame, board.shot)
        if cue is not None and subtitles:
            look = looks.get(speaker)
            _subtitle(frame, cue, look.colour if look else None)
        yield frame
