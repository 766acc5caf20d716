"""Clips and episodes with sound: a beat's clip gets its speech as an AAC track and its
cues as a `mov_text` track; an episode is mixed (speech, a music bed ducked under the
dialogue, optional ambience), brought to -16 LUFS with true peak at most -1 dBTP, and
written with its picture, sound and subtitles in one streaming pass per beat.

Nothing here holds a whole episode: pass 1 decodes each beat's sound, mixes it, measures
it and writes the mix to a scratch file; pass 2 reads it back beat by beat, applies the
gain and the limiter, and encodes it interleaved with that beat's frames.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from storyworld.audio import (
    SAFE_BELOW,
    SAMPLE_RATE,
    AacWriter,
    LoopingSource,
    LoudnessMeter,
    db_to_gain,
    decode_audio,
    duck_envelope,
    limit_true_peak,
)
from storyworld.media import conform_frames, probe_fps, read_frames
from storyworld.subtitles import Cue

__all__ = [
    "BeatClip",
    "EpisodeMix",
    "SoundBeds",
    "add_clip_sound",
    "beat_samples",
    "compose_episode",
    "extract_sound",
    "read_subtitle_track",
    "write_sound",
]

TARGET_LUFS = -16.0
CEILING_DBTP = -1.0
#: A music bed sits this loud before ducking (speech lines are levelled near -20 LUFS).
BED_LUFS = -30.0
AMBIENCE_LUFS = -38.0
DUCK_DB = -15.0
#: A music bed fades in and out over this long where it starts, stops or changes.
SCENE_FADE_S = 0.5

_ASS_HEADER = (
    b"[Script Info]\r\nScriptType: v4.00+\r\nPlayResX: 384\r\nPlayResY: 288\r\n\r\n"
    b"[V4+ Styles]\r\nFormat: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, "
    b"OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, "
    b"Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\r\n"
    b"Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0"
    b"\r\n\r\n[Events]\r\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, "
    b"Effect, Text\r\n"
)


def beat_samples(frames_before: int, frames: int, fps: int) -> tuple[int, int]:
    """(first sample, sample count) of a beat at 48 kHz, from frame counts, so the sound
    of every beat starts exactly where its first frame does."""
    a = round(frames_before * SAMPLE_RATE / fps)
    b = round((frames_before + frames) * SAMPLE_RATE / fps)
    return a, b - a


class _SubtitleTrack:
    """A mov_text stream: each cue one packet (2-byte length + UTF-8 text), in ms."""

    def __init__(self, container: av.container.OutputContainer) -> None:
        self.stream = container.add_stream("mov_text")
        self.stream.codec_context.subtitle_header = _ASS_HEADER
        self.stream.time_base = Fraction(1, 1000)
        self.container = container
        self.last_end = 0

    def write(self, cue: Cue) -> None:
        start = max(self.last_end, round(cue.start_s * 1000))
        end = max(start + 1, round(cue.end_s * 1000))
        text = cue.caption.encode("utf-8")[:65000]
        packet = av.Packet(struct.pack(">H", len(text)) + text)
        packet.stream = self.stream
        packet.time_base = Fraction(1, 1000)
        packet.pts = packet.dts = start
        packet.duration = end - start
        self.container.mux(packet)
        self.last_end = end


def _stereo(x: np.ndarray) -> np.ndarray:
    return np.vstack([x, x]) if x.ndim == 1 else x


def add_clip_sound(
    video: Path, out: Path, samples: np.ndarray | None, cues: list[Cue], frames: int, fps: int
) -> None:
    """Remux a silent clip with its sound (mono or stereo at 48 kHz, silence when None)
    and its cues. The sound lasts exactly as long as the picture."""
    n = beat_samples(0, frames, fps)[1]
    sound = np.zeros((2, n), np.float32)
    if samples is not None:
        s = _stereo(samples)[:, :n]
        sound[:, : s.shape[1]] = s
    tmp = out.with_name(f".{out.name}.part")
    try:
        with (
            av.open(str(video)) as src,
            av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
        ):
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            aac = AacWriter(dst)
            subs = _SubtitleTrack(dst) if cues else None
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue
                packet.stream = vout
                dst.mux(packet)
            aac.write(sound)
            aac.close()
            for cue in cues:
                if subs is not None:
                    subs.write(cue)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def extract_sound(clip: Path, out: Path) -> None:
    """A clip's audio track alone (.m4a), copied without re-encoding."""
    tmp = out.with_name(f".{out.name}.part")
    try:
        with av.open(str(clip)) as src, av.open(str(tmp), "w", format="mp4") as dst:
            ain = src.streams.audio[0]
            aout = dst.add_stream_from_template(ain)
            for packet in src.demux(ain):
                if packet.dts is None:
                    continue
                packet.stream = aout
                dst.mux(packet)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_sound(samples: np.ndarray, out: Path) -> None:
    """Mono or stereo samples at 48 kHz as an AAC file (.m4a)."""
    tmp = out.with_name(f".{out.name}.part")
    try:
        with av.open(str(tmp), "w", format="mp4") as dst:
            aac = AacWriter(dst)
            aac.write(_stereo(samples).astype(np.float32))
            aac.close()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_subtitle_track(path: str | Path) -> list[tuple[float, float, str]]:
    """(start s, end s, text) of every non-empty cue of an MP4's subtitle track."""
    out = []
    with av.open(str(path)) as c:
        if not c.streams.subtitles:
            return []
        stream = c.streams.subtitles[0]
        tb = float(stream.time_base)
        for packet in c.demux(stream):
            raw = bytes(packet)
            if len(raw) < 2 or packet.pts is None:
                continue
            n = struct.unpack(">H", raw[:2])[0]
            if n:
                text = raw[2 : 2 + n].decode("utf-8")
                out.append((packet.pts * tb, (packet.pts + (packet.duration or 0)) * tb, text))
    return out


def _clip_sound(path: Path, n: int) -> np.ndarray:
    """A clip's own sound as (2, n) at 48 kHz: padded or cut to its beat; silence for a
    clip without an audio track."""
    out = np.zeros((2, n), np.float32)
    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return out
    except av.FFmpegError:
        return out
    have = 0
    for chunk in decode_audio(path):
        take = min(chunk.shape[1], n - have)
        out[:, have : have + take] = chunk[:, :take]
        have += take
        if have >= n:
            break
    return out


@dataclass
class SoundBeds:
    """Music per beat (a scene's music, else the episode's) and an ambience, all optional."""

    music: dict[int, Path] = field(default_factory=dict)
    ambience: Path | None = None


def _bed_gain_db(path: Path, target: float) -> float:
    """The gain that brings a bed's first minute to `target` LUFS."""
    meter = LoudnessMeter()
    got = 0
    for chunk in decode_audio(path):
        meter.add(chunk, peak=False)
        got += chunk.shape[1]
        if got >= SAMPLE_RATE * 60:
            break
    loud = meter.integrated()
    return 0.0 if not math.isfinite(loud) else target - loud


@dataclass
class BeatClip:
    """One beat of an episode: its clip, frame count and cues (times within the beat)."""

    path: Path
    frames: int
    cues: list[Cue] = field(default_factory=list)


@dataclass
class EpisodeMix:
    """What composing measured: loudness before and after the gain, the true peak, the
    cues on the episode's timeline, and the durations of picture and sound."""

    cues: list[Cue]
    frames: int
    samples: int
    measured_lufs: float
    gain_db: float
    lufs: float
    true_peak_dbtp: float

    def to_json(self, fps: int) -> dict[str, float | int]:
        return {
            "frames": self.frames,
            "video_s": round(self.frames / fps, 4),
            "audio_s": round(self.samples / SAMPLE_RATE, 4),
            "lufs": round(self.lufs, 2),
            "true_peak_dbtp": round(self.true_peak_dbtp, 2),
            "measured_lufs": round(self.measured_lufs, 2),
            "gain_db": round(self.gain_db, 2),
            "cues": len(self.cues),
        }


def _mix_pass(
    beats: list[BeatClip], fps: int, beds: SoundBeds, scratch: Path
) -> tuple[LoudnessMeter, list[Cue]]:
    meter = LoudnessMeter()
    sources: dict[Path, LoopingSource] = {}
    ambience = (
        LoopingSource(beds.ambience, _bed_gain_db(beds.ambience, AMBIENCE_LUFS))
        if beds.ambience
        else None
    )
    cues: list[Cue] = []
    before = 0
    with open(scratch, "wb") as f:
        for i, beat in enumerate(beats):
            start, n = beat_samples(before, beat.frames, fps)
            t0 = start / SAMPLE_RATE
            sound = _clip_sound(beat.path, n)
            spans = [(t0 + c.start_s, t0 + c.end_s) for c in beat.cues]
            cues += [Cue(t0 + c.start_s, t0 + c.end_s, c.speaker, c.text) for c in beat.cues]
            music = beds.music.get(i)
            if music is not None:
                if music not in sources:
                    sources[music] = LoopingSource(music, _bed_gain_db(music, BED_LUFS))
                bed = sources[music].read(n) * duck_envelope(n, t0, spans, depth_db=DUCK_DB)
                # Where the music changes (a scene with its own), fade it in and out.
                fade = min(n // 2, int(SAMPLE_RATE * SCENE_FADE_S))
                if fade and beds.music.get(i - 1) != music:
                    bed[:, :fade] *= np.linspace(0, 1, fade, dtype=np.float32)
                if fade and beds.music.get(i + 1) != music:
                    bed[:, n - fade :] *= np.linspace(1, 0, fade, dtype=np.float32)
                sound += bed
            if ambience is not None:
                sound += ambience.read(n)
            meter.add(sound, peak=False)
            f.write(np.ascontiguousarray(sound.T, dtype=np.float32).tobytes())
            before += beat.frames
    return meter, cues


def _burn(frame: np.ndarray, cue: Cue) -> np.ndarray:
    img = Image.fromarray(frame)
    w, h = img.size
    d = ImageDraw.Draw(img, "RGBA")
    size = max(10, h // 16)
    font = ImageFont.load_default(size=size)
    lines = textwrap.wrap(cue.caption, width=max(16, int(w / (size * 0.52))))[:3]
    top = h - (size + 4) * len(lines) - size // 2
    d.rectangle([0, top - 4, w, h], fill=(0, 0, 0, 160))
    for k, line in enumerate(lines):
        d.text((w // 2, top + k * (size + 4)), line, font=font, fill=(255, 255, 255), anchor="ma")
    return np.asarray(img)


def _frames(beat: BeatClip, fps: int) -> Iterator[np.ndarray]:
    yield from conform_frames(read_frames(beat.path), probe_fps(beat.path), fps, beat.frames)


def _limited_loudness(scratch: Path, beats: list[BeatClip], fps: int, gain: float) -> float:
    meter = LoudnessMeter()
    before = 0
    with open(scratch, "rb") as f:
        for beat in beats:
            n = beat_samples(before, beat.frames, fps)[1]
            sound = np.frombuffer(f.read(n * 2 * 4), np.float32).reshape(-1, 2).T * gain
            meter.add(limit_true_peak(sound, CEILING_DBTP), peak=False)
            before += beat.frames
    return meter.integrated()


def _glibc() -> object | None:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


def _map_large_blocks() -> None:
    """Beats' sound arrays differ in size from beat to beat; with glibc's default (a
    threshold for mmap that rises with every large free) they end up in heap arenas that
    fragment, and an hour-long compose in a thread grows by a gigabyte. A fixed 1 MiB
    threshold gives every large array its own mapping, returned when it is freed."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(-3, 1 << 20)  # type: ignore[attr-defined]  # M_MMAP_THRESHOLD


def _trim() -> None:
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)  # type: ignore[attr-defined]


def compose_episode(
    beats: list[BeatClip],
    out: Path,
    *,
    fps: int,
    width: int,
    height: int,
    beds: SoundBeds | None = None,
    burn_subtitles: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> EpisodeMix:
    """Write the episode: H.264 + AAC 48 kHz stereo (+ mov_text unless burnt in),
    faststart, at -16 LUFS and at most -1 dBTP."""
    beds = beds or SoundBeds()
    w, h = width - width % 2, height - height % 2
    _map_large_blocks()
    with tempfile.TemporaryDirectory(prefix="storyworld-mix-") as tmp:
        scratch = Path(tmp) / "mix.f32"
        meter, cues = _mix_pass(beats, fps, beds, scratch)
        measured = meter.integrated()
        gain_db = TARGET_LUFS - measured if math.isfinite(measured) else 0.0
        # The limiter takes some loudness off what it holds down: measure the limited mix
        # once (no encoding; the limiter is cheap) and make up the difference.
        if meter.sample_peak * db_to_gain(gain_db) >= db_to_gain(CEILING_DBTP) * SAFE_BELOW:
            limited = _limited_loudness(scratch, beats, fps, db_to_gain(gain_db))
            if math.isfinite(limited) and abs(TARGET_LUFS - limited) > 0.1:
                gain_db += TARGET_LUFS - limited
        gain = db_to_gain(gain_db)
        final = LoudnessMeter()
        part = out.with_name(f".{out.name}.part")
        frames_written = samples_written = 0
        try:
            with (
                open(scratch, "rb") as f,
                av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as dst,
            ):
                copy = not burn_subtitles and _copyable(beats, fps, w, h)
                video = (
                    _VideoCopy(dst, beats[0].path, fps) if copy else _VideoEncode(dst, fps, w, h)
                )
                aac = AacWriter(dst)
                subs = None if burn_subtitles else _SubtitleTrack(dst)
                before = 0
                for i, beat in enumerate(beats):
                    start, n = beat_samples(before, beat.frames, fps)
                    t0 = start / SAMPLE_RATE
                    raw = f.read(n * 2 * 4)
                    sound = np.frombuffer(raw, np.float32).reshape(-1, 2).T * gain
                    sound = limit_true_peak(sound, CEILING_DBTP)
                    final.add(sound)
                    aac.write(sound)
                    samples_written += sound.shape[1]
                    beat_cues = [
                        Cue(t0 + c.start_s, t0 + c.end_s, c.speaker, c.text) for c in beat.cues
                    ]
                    if isinstance(video, _VideoCopy):
                        frames_written += video.copy(beat.path, frames_written)
                    for k, arr in enumerate(() if copy else _frames(beat, fps)):
                        if burn_subtitles:
                            t = t0 + k / fps
                            cue = next((c for c in beat_cues if c.start_s <= t < c.end_s), None)
                            if cue is not None:
                                arr = _burn(arr, cue)
                        video.write(arr, frames_written)
                        frames_written += 1
                    if subs is not None:
                        for cue in beat_cues:
                            subs.write(cue)
                    before += beat.frames
                    if i % 50 == 49:
                        _trim()
                    if progress is not None:
                        progress(i + 1, len(beats))
                video.close()
                aac.close()
            os.replace(part, out)
        finally:
            if part.exists():
                part.unlink()
    return EpisodeMix(
        cues=cues,
        frames=frames_written,
        samples=samples_written,
        measured_lufs=measured,
        gain_db=gain_db,
        lufs=final.integrated(),
        true_peak_dbtp=final.peak_db,
    )


class _VideoEncode:
    """Frames to H.264 (when clips differ, or subtitles are burnt in)."""

    def __init__(self, dst: av.container.OutputContainer, fps: int, w: int, h: int) -> None:
        self.dst, self.w, self.h = dst, w, h
        self.stream = dst.add_stream("libx264", rate=Fraction(fps))
        self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
        self.stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, arr: np.ndarray, index: int) -> None:
        vf = av.VideoFrame.from_ndarray(_fit(arr, self.w, self.h), format="rgb24")
        vf.pts = index
        for packet in self.stream.encode(vf):
            self.dst.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.dst.mux(packet)


class _VideoCopy:
    """The clips' H.264 packets, re-timed one after the other, not re-encoded: clips of
    one episode come from the same encoder settings, so their streams join as they are."""

    def __init__(self, dst: av.container.OutputContainer, first: Path, fps: int) -> None:
        self.dst, self.fps = dst, fps
        with av.open(str(first)) as src:
            self.stream = dst.add_stream_from_template(src.streams.video[0])
            self.time_base = src.streams.video[0].time_base
        self.stream.time_base = self.time_base

    def copy(self, clip: Path, frames_before: int) -> int:
        offset = round(frames_before / self.fps / self.time_base)
        n = 0
        with av.open(str(clip)) as src:
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is None:
                    continue
                packet.stream = self.stream
                packet.pts += offset
                packet.dts += offset
                self.dst.mux(packet)
                n += 1
        return n

    def write(self, arr: np.ndarray, index: int) -> None:
        raise AssertionError("copied clips are not re-encoded")

    def close(self) -> None:
        pass


def _copyable(beats: list[BeatClip], fps: int, w: int, h: int) -> bool:
    """Whether every clip is H.264 at the episode's size and rate, with its beat's exact
    frame count, the same time base and the same codec parameters (SPS/PPS)."""
    first: tuple[object, ...] | None = None
    for beat in beats:
        try:
            with av.open(str(beat.path)) as src:
                v = src.streams.video[0]
                ctx = v.codec_context
                key = (ctx.name, ctx.width, ctx.height, v.time_base, bytes(ctx.extradata or b""))
                rate_ok = v.average_rate is not None and abs(float(v.average_rate) - fps) < 1e-6
                if not rate_ok or v.frames != beat.frames or ctx.name != "h264":
                    return False
        except (av.FFmpegError, IndexError):
            return False
        if (ctx.width, ctx.height) != (w, h) or (first is not None and key != first):
            return False
        first = key
    return bool(beats)


def _fit(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BICUBIC))
