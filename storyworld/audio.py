"""Sound in and out: decoding any file PyAV reads to 48 kHz stereo, a streaming EBU R128
loudness meter, ducking, a true-peak limiter, and AAC encoding.

The loudness meter runs the K-weighting filters of `pyloudnorm` (their coefficients, with
filter state carried from chunk to chunk, so an hour of sound is measured in constant
memory) and gates 400 ms blocks as ITU-R BS.1770-4 says; `tests/test_audio.py` checks it
against `pyloudnorm.Meter.integrated_loudness` on whole signals. True peak is measured on
a 4x oversampled signal, as BS.1770 annex 2 describes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from math import gcd
from pathlib import Path

import av
import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "AacWriter",
    "AudioError",
    "LoopingSource",
    "LoudnessMeter",
    "check_decodable",
    "db_to_gain",
    "decode_audio",
    "duck_envelope",
    "limit_true_peak",
    "resample",
    "true_peak_db",
]

SAMPLE_RATE = 48_000


class AudioError(ValueError):
    """A sound file that cannot be used; the message names the file and the fix."""


def db_to_gain(db: float) -> float:
    return float(10 ** (db / 20))


def resample(x: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a mono (n,) or (channels, n) signal."""
    if rate_in == rate_out or x.shape[-1] == 0:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(np.float32)


def decode_audio(path: str | Path, rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """The first audio stream of a file as (2, n) float32 chunks at `rate`."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise AudioError(f"cannot open {path}: {e}") from None
    with container:
        if not container.streams.audio:
            raise AudioError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    yield out.to_ndarray().astype(np.float32, copy=False)
            for out in resampler.resample(None):
                yield out.to_ndarray().astype(np.float32, copy=False)
        except av.FFmpegError as e:
            raise AudioError(f"cannot decode {path}: {e}") from None


def check_decodable(path: str | Path, what: str = "sound file") -> None:
    """Refuse a file that is missing or has no decodable audio, with the name and fix."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{what} {p} does not exist (fix the path, relative to the cast file)")
    try:
        for chunk in decode_audio(p):
            if chunk.shape[-1]:
                return
    except AudioError as e:
        raise AudioError(
            f"{what} {p} cannot be decoded ({e}); use a WAV, FLAC, OGG, MP3 or M4A file"
        ) from None
    raise AudioError(f"{what} {p} holds no sound; use a WAV, FLAC, OGG, MP3 or M4A file")


class LoopingSource:
    """Reads a sound file as a loop, `read(n)` samples at a time, decoding as it goes
    (a music bed under an hour of episode never sits in memory whole)."""

    def __init__(self, path: str | Path, gain_db: float = 0.0) -> None:
        self.path = Path(path)
        self.gain = db_to_gain(gain_db)
        self._it: Iterator[np.ndarray] = iter(())
        self._buf = np.zeros((2, 0), np.float32)
        self._empty_passes = 0

    def read(self, n: int) -> np.ndarray:
        parts, have = [self._buf], self._buf.shape[1]
        while have < n:
            chunk = next(self._it, None)
            if chunk is None:
                self._empty_passes = self._empty_passes + 1 if have == 0 else 0
                if self._empty_passes > 2:
                    raise AudioError(f"{self.path} holds no sound")
                self._it = decode_audio(self.path)
                continue
            parts.append(chunk)
            have += chunk.shape[1]
        data = np.concatenate(parts, axis=1)
        self._buf = data[:, n:]
        return data[:, :n] * self.gain


def duck_envelope(
    n: int,
    start_s: float,
    spans: list[tuple[float, float]],
    *,
    rate: int = SAMPLE_RATE,
    depth_db: float = -15.0,
    fade_s: float = 0.15,
) -> np.ndarray:
    """A gain curve for `n` samples starting at `start_s`: 1 outside the spans, `depth_db`
    inside them, with linear fades of `fade_s` before and after each span."""
    t = start_s + np.arange(n, dtype=np.float64) / rate
    depth = db_to_gain(depth_db)
    duck = np.zeros(n, np.float64)  # 0: full level, 1: fully ducked
    for a, b in spans:
        if b + fade_s < t[0] or a - fade_s > t[-1]:
            continue
        rise = np.clip((t - (a - fade_s)) / fade_s, 0, 1)
        fall = np.clip(((b + fade_s) - t) / fade_s, 0, 1)
        duck = np.maximum(duck, np.minimum(rise, fall))
    return (1.0 - duck * (1.0 - depth)).astype(np.float32)


#: A signal whose samples stay under this fraction of a ceiling (-4 dB) cannot have peaks
#: between its samples over it (band-limited audio overshoots its samples by far less).
SAFE_BELOW = 0.63


def true_peak_db(x: np.ndarray) -> float:
    """The true peak (dBTP) of a (channels, n) chunk: the sample peak of the signal
    oversampled four times."""
    if x.size == 0:
        return -math.inf
    up = resample(x, 1, 4)
    peak = float(np.max(np.abs(up)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def limit_true_peak(x: np.ndarray, ceiling_db: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Bring peaks above `ceiling_db` down with a smooth gain (5 ms attack before each
    peak, 80 ms release after), so the oversampled peak stays under the ceiling."""
    ceiling = db_to_gain(ceiling_db - 0.1)
    if x.size == 0 or float(np.max(np.abs(x))) < ceiling * SAFE_BELOW:
        return x  # far enough below the ceiling that no peak between samples reaches it
    # Each sample's level is the largest of its four oversampled neighbours: peaks between
    # samples count.
    up = np.abs(resample(x, 1, 4))
    level = np.max(up[:, : x.shape[1] * 4].reshape(x.shape[0], x.shape[1], 4), axis=(0, 2))
    level = np.maximum(level, np.max(np.abs(x), axis=0))
    need = np.minimum(1.0, ceiling / np.maximum(level, 1e-9))
    if need.min() >= 1.0:
        return x
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    # The minimum over +-40 ms, smoothed over 5 ms: never above what any sample needs
    # (each average only takes values that are minima over windows holding the sample).
    hold = int(rate * 0.08) | 1
    gain = uniform_filter1d(minimum_filter1d(need, size=hold), size=max(1, int(rate * 0.005)))
    return (x * np.minimum(gain, need)).astype(np.float32)


class LoudnessMeter:
    """Integrated loudness (LUFS) and true peak (dBTP) of a stream of (channels, n)
    chunks; memory grows by one float per 100 ms, not with the signal."""

    def __init__(self, rate: int = SAMPLE_RATE, channels: int = 2) -> None:
        import pyloudnorm
        from scipy.signal import tf2sos

        meter = pyloudnorm.Meter(rate)  # K-weighting, 400 ms blocks, 75 % overlap
        self.rate = rate
        # pyloudnorm's two K-weighting stages as second-order sections, run over both
        # channels at once with their state carried between chunks.
        self.sos = np.vstack([tf2sos(f.b, f.a) for f in meter._filters.values()])
        self.zi = np.zeros((self.sos.shape[0], channels, 2))
        self.step = int(rate * 0.1)
        self.pending = np.zeros((channels, 0))
        self.sub: list[np.ndarray] = []  # per 100 ms: sum of squares per channel
        self.peak_db = -math.inf
        self.sample_peak = 0.0
        self.samples = 0

    def add(self, x: np.ndarray, *, peak: bool = True) -> None:
        from scipy.signal import sosfilt

        x = np.asarray(x, dtype=np.float64)
        self.samples += x.shape[1]
        self.sample_peak = max(self.sample_peak, float(np.max(np.abs(x))) if x.size else 0.0)
        if peak:
            self.peak_db = max(self.peak_db, true_peak_db(x))
        y, self.zi = sosfilt(self.sos, x, axis=-1, zi=self.zi)
        data = np.concatenate([self.pending, y], axis=1)
        whole = data.shape[1] // self.step
        if whole:
            blocks = data[:, : whole * self.step].reshape(data.shape[0], whole, self.step)
            self.sub.extend(np.sum(blocks**2, axis=2).T)
        self.pending = data[:, whole * self.step :]

    def integrated(self) -> float:
        """Gated integrated loudness, as BS.1770-4 (and pyloudnorm) define it."""
        if len(self.sub) < 4:
            return -math.inf
        sub = np.array(self.sub)  # (n_sub, channels)
        block_len = 4 * self.step
        z = (sub[:-3] + sub[1:-2] + sub[2:-1] + sub[3:]) / block_len  # (blocks, channels)
        gains = np.array([1.0, 1.0, 1.0, 1.41, 1.41][: z.shape[1]])
        with np.errstate(divide="ignore"):
            lj = -0.691 + 10 * np.log10(z @ gains)
            above = lj >= -70.0
            if not above.any():
                return -math.inf
            rel = -0.691 + 10 * np.log10(z[above].mean(axis=0) @ gains) - 10.0
            keep = (lj > rel) & (lj > -70.0)
            if not keep.any():
                return -math.inf
            return float(-0.691 + 10 * np.log10(z[keep].mean(axis=0) @ gains))


class AacWriter:
    """Encodes (2, n) float32 chunks at 48 kHz to an AAC stream of an open container."""

    def __init__(self, container: av.container.OutputContainer, bitrate: int = 160_000) -> None:
        self.stream = container.add_stream("aac", rate=SAMPLE_RATE)
        self.stream.layout = "stereo"
        self.stream.bit_rate = bitrate
        # The "fast" coder is 2-3x quicker than the default two-loop search and plenty for
        # dialogue and a music bed; an hour of episode sound is encoded in about a minute.
        self.stream.options = {"aac_coder": "fast"}
        self.container = container
        self.pts = 0
        self.frame = 1024
        self._buf = np.zeros((2, 0), np.float32)

    def write(self, x: np.ndarray) -> None:
        data = np.concatenate([self._buf, x.astype(np.float32)], axis=1)
        whole = data.shape[1] // self.frame * self.frame
        for i in range(0, whole, self.frame):
            self._encode(data[:, i : i + self.frame])
        self._buf = data[:, whole:]

    def _encode(self, block: np.ndarray) -> None:
        fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout="stereo")
        fr.sample_rate = SAMPLE_RATE
        fr.pts = self.pts
        fr.time_base = Fraction(1, SAMPLE_RATE)
        self.pts += block.shape[1]
        for packet in self.stream.encode(fr):
            self.container.mux(packet)

    def close(self) -> None:
        if self._buf.shape[1]:
            self._encode(self._buf)
            self._buf = np.zeros((2, 0), np.float32)
        for packet in self.stream.encode(None):
            self.container.mux(packet)
