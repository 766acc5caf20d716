"""Video in and out with PyAV: H.264 MP4 (yuv420p, faststart), probing, conforming and
concatenating clips. Shared by the worker (encode a clip) and the engine (compose)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

__all__ = ["VideoInfo", "concat_videos", "conform_frames", "encode_frames", "probe", "read_frames"]


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    codec: str


def _even(n: int) -> int:
    return max(2, n - (n % 2))


def _to_array(frame: Image.Image | np.ndarray, width: int, height: int) -> np.ndarray:
    img = Image.fromarray(frame) if isinstance(frame, np.ndarray) else frame
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img)


def encode_frames(
    frames: Iterable[Image.Image | np.ndarray],
    path: str | Path,
    *,
    fps: int,
    width: int,
    height: int,
    crf: int = 23,
    preset: str = "veryfast",
) -> int:
    """Encode RGB frames to an H.264 MP4 at `path` (written to a temp name and renamed, so a
    crash never leaves half a file). Sizes are rounded down to even numbers (yuv420p).
    Returns the number of frames written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    w, h = _even(width), _even(height)
    count = 0
    try:
        with av.open(
            str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}
        ) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height = w, h
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": preset}
            for frame in frames:
                vf = av.VideoFrame.from_ndarray(_to_array(frame, w, h), format="rgb24")
                for packet in stream.encode(vf):
                    container.mux(packet)
                count += 1
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if count == 0:
        raise ValueError("no frames to encode")
    return count


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode every frame of the first video stream as RGB arrays."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def probe(path: str | Path) -> VideoInfo:
    """Facts about a video, counting frames by decoding (exact, for tests and checks)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        n = 0
        for _ in container.decode(video=0):
            n += 1
        width, height = stream.codec_context.width, stream.codec_context.height
        codec = stream.codec_context.name
    return VideoInfo(
        frames=n,
        fps=fps,
        width=width,
        height=height,
        duration_s=(n / fps if fps else 0.0),
        codec=codec,
    )


def conform_frames(
    source: Iterable[np.ndarray],
    source_fps: float,
    fps: int,
    n_frames: int,
) -> Iterator[np.ndarray]:
    """Resample a frame sequence to exactly `n_frames` at `fps` (nearest source frame in
    time; the last frame is held if the source is short)."""
    it = iter(source)
    current = next(it, None)
    if current is None:
        return
    index = 0
    for i in range(n_frames):
        want = int(i * source_fps / fps + 1e-6) if source_fps else i
        while index < want:
            nxt = next(it, None)
            if nxt is None:
                break
            current, index = nxt, index + 1
        yield current


def concat_videos(
    paths: list[str | Path],
    out: str | Path,
    *,
    fps: int,
    width: int,
    height: int,
    expected_frames: list[int] | None = None,
) -> int:
    """Concatenate clips into one MP4 at the episode's size and fps. With
    `expected_frames`, each clip contributes exactly that many frames (resampled if a
    backend returned another rate), so the episode lasts the sum of its beats."""

    def frames() -> Iterator[np.ndarray]:
        for i, p in enumerate(paths):
            if expected_frames is None:
                yield from read_frames(p)
            else:
                info_fps = probe_fps(p)
                yield from conform_frames(read_frames(p), info_fps, fps, expected_frames[i])

    return encode_frames(frames(), out, fps=fps, width=width, height=height)


def probe_fps(path: str | Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 0)
