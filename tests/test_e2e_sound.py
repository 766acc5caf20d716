"""What must be shown (issue 9): a two-character Fountain script renders on the local
default to an MP4 with speech, subtitles and the loudness of the standard."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import pyloudnorm

from storyworld.audio import SAMPLE_RATE, decode_audio, true_peak_db
from storyworld.engine import services
from storyworld.engine.planner import plan_script
from storyworld.soundtrack import read_subtitle_track
from storyworld.storage import LocalStore
from storyworld.subtitles import parse_srt, parse_vtt
from tests.test_e2e_local import wait_for

SCRIPT = """Title: Two Voices

EXT. PIER - NIGHT

[2s] WIDE on the pier. Mara waits by the boat.

MARA
(calling out)
Tom, is that you?

TOM (O.S.)
I brought the lantern.

INT. KITCHEN - DAY

[3s] CLOSE ON Tom at the table.

TOM
We should go before the storm.
"""

LINES = [
    ("MARA", "Tom, is that you?"),
    ("TOM", "I brought the lantern."),
    ("TOM", "We should go before the storm."),
]


def _music(path: Path, seconds: float = 3.0) -> Path:
    """A chord as a WAV file: a music bed any decoder reads."""
    t = np.arange(int(seconds * 22050)) / 22050
    x = sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330)) / 3 * 0.5
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def test_two_characters_render_with_speech_subtitles_and_loudness(
    runtime, background, tmp_path: Path
) -> None:
    plan = plan_script(SCRIPT)
    music = _music(tmp_path / "bed.wav")
    options = {"sound": {"music": str(music)}}
    detail = services.create_episode(runtime, plan, script=SCRIPT, fps=12, options=options)
    background.engine(runtime)
    background.worker(runtime)
    done = wait_for(
        lambda: (
            (d := services.episode_detail(runtime, detail["id"]))["state"]
            in ("completed", "failed")
            and d
        ),
        timeout=120,
    )
    assert done["state"] == "completed", done["error"]
    store = runtime.store
    assert isinstance(store, LocalStore)
    out = store.local_path(done["output_key"])

    # H.264 + AAC 48 kHz stereo + mov_text, sound as long as the picture.
    with av.open(str(out)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert a.codec_context.sample_rate == SAMPLE_RATE and a.codec_context.channels == 2
        assert c.streams.subtitles[0].codec_context.name == "mov_text"
        video_s = float(v.frames / v.average_rate)
    sound = np.concatenate(list(decode_audio(out)), axis=1)
    assert abs(sound.shape[1] / SAMPLE_RATE - video_s) <= 1 / 12

    # The beat of two lines in 2 s grew to fit, and says so.
    first = done["beats"][0]
    assert first["duration_s"] > 2.0
    grew = [h["reason"] for h in done["history"] if h["id"] == first["id"]]
    assert any("grew from 2 s to" in r and "to fit its dialogue" in r for r in grew), grew
    assert done["options"]["mix"]["cues"] == 3

    # One cue per line, in script order, with the speaker, in the track, .vtt and .srt.
    keys = {a["kind"]: [] for a in done["artifacts"]}
    for art in done["artifacts"]:
        keys[art["kind"]].append(art["key"])
    assert len(keys["audio"]) == 2  # each beat with dialogue stored its speech
    vtt = next(k for k in keys["subtitles"] if k.endswith(".vtt"))
    srt = next(k for k in keys["subtitles"] if k.endswith(".srt"))
    vtt_cues = parse_vtt(store.local_path(vtt).read_text())
    srt_cues = parse_srt(store.local_path(srt).read_text())
    assert [(c.speaker, c.text) for c in vtt_cues] == LINES
    assert [(c.speaker, c.text) for c in srt_cues] == LINES
    track = read_subtitle_track(out)
    assert [t for _, _, t in track] == [f"{s}: {t}" for s, t in LINES]
    assert all(abs(s - c.start_s) <= 0.002 for (s, _, _), c in zip(track, vtt_cues, strict=True))

    # Each beat's clip keeps its own sound, the speech alone: loud during each of its
    # lines, at the floor between them.
    for beat in done["beats"]:
        cues = beat["jobs"][-1]["model_info"]["speech"]["cues"]
        clip = np.concatenate(list(decode_audio(store.local_path(beat["clip_key"]))), axis=1)
        mono = clip.mean(axis=0)
        edges = (
            [0.0]
            + [t for c in cues for t in (c["start_s"], c["end_s"])]
            + [len(mono) / SAMPLE_RATE]
        )
        for k in range(0, len(edges) - 1):
            a, b = int(edges[k] * SAMPLE_RATE), int(edges[k + 1] * SAMPLE_RATE)
            if k % 2:  # a line
                assert _rms(mono[a:b]) > 0.05
            elif b - a > SAMPLE_RATE // 5:  # between lines (AAC may smear the edges)
                margin = SAMPLE_RATE // 20
                assert _rms(mono[a + margin : b - margin]) < 0.003
    # In the episode the music bed plays between lines, well under the speech.
    mono = sound.mean(axis=0)
    during = [
        _rms(mono[int(c.start_s * SAMPLE_RATE) : int(c.end_s * SAMPLE_RATE)]) for c in vtt_cues
    ]
    between = _rms(mono[int(0.05 * SAMPLE_RATE) : int((vtt_cues[0].start_s - 0.2) * SAMPLE_RATE)])
    assert 0 < between < min(during) / 2
    # Loudness of the standard, measured with pyloudnorm on the decoded file.
    lufs = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(sound.T.astype(np.float64))
    assert abs(lufs - (-16.0)) <= 1.0, lufs
    peak = 20 * math.log10(float(np.max(np.abs(sound))))
    assert peak <= -1.0 and true_peak_db(sound) <= -0.9  # AAC may move peaks a little
    data = out.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: the index comes first


def test_a_revision_reuses_voiced_beats_with_their_grown_length(runtime, background) -> None:
    """An edit re-renders only the beat whose line changed; the reused beat keeps the
    length it grew to and its cues, so the revision's sound and subtitles are whole."""
    first_script = SCRIPT
    edited = SCRIPT.replace("We should go before the storm.", "Let us go now.")
    background.engine(runtime)
    background.worker(runtime)

    def render(text: str) -> dict:
        plan = plan_script(text)
        d = services.create_episode(runtime, plan, script=text, fps=12, reuse=True)
        return wait_for(
            lambda: (
                (x := services.episode_detail(runtime, d["id"]))["state"] in ("completed", "failed")
                and x
            ),
            timeout=120,
        )

    one = render(first_script)
    two = render(edited)
    assert one["state"] == two["state"] == "completed", two["error"]
    assert [len(b["jobs"]) for b in two["beats"]] == [0, 1]  # beat 1 reused
    assert two["beats"][0]["duration_s"] == one["beats"][0]["duration_s"] > 2.0
    store = runtime.store
    vtt = next(a["key"] for a in two["artifacts"] if a["key"].endswith(".vtt"))
    cues = parse_vtt(store.local_path(vtt).read_text())
    assert [c.text for c in cues] == [
        "Tom, is that you?",
        "I brought the lantern.",
        "Let us go now.",
    ]
    out = store.local_path(two["output_key"])
    sound = np.concatenate(list(decode_audio(out)), axis=1)
    with av.open(str(out)) as c:
        video_s = float(c.streams.video[0].frames / c.streams.video[0].average_rate)
    assert abs(sound.shape[1] / SAMPLE_RATE - video_s) <= 1 / 12
    assert abs(video_s - sum(b["duration_s"] for b in two["beats"])) <= 1 / 12
