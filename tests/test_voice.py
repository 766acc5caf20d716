"""Voiced dialogue: voice names, the CPU voice, a tiny VITS voice, the voice stage, and
the loudness meter checked against pyloudnorm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from storyworld.audio import SAMPLE_RATE, LoudnessMeter, limit_true_peak, true_peak_db
from storyworld.protocol import Job, RenderSpec, SpokenLine
from storyworld.voices import VoiceError, default_voice, parse_voice
from storyworld.worker.voice import voice_stage
from storyworld.worker.voice.stage import speak_beat


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def _spec(lines: list[tuple[str, str, str]], duration: float = 8.0) -> RenderSpec:
    return RenderSpec(
        text="They talk.",
        duration_s=duration,
        width=64,
        height=36,
        fps=12,
        dialogue=[SpokenLine(speaker=s, text=t, extension=e) for s, t, e in lines],
    )


def test_voice_names_resolve_or_are_refused_with_the_fix(tmp_path: Path) -> None:
    assert parse_voice("", "MARA") == default_voice("MARA") == default_voice("mara")
    assert default_voice("MARA") != default_voice("TOM")
    alto = parse_voice("alto, weathered", "MARA")
    assert alto.engine == "espeak" and alto.name.endswith("+croak")
    assert parse_voice("espeak:en-gb+m3").name == "en-gb+m3"
    assert parse_voice("deep male british").name.startswith("en+m")
    with pytest.raises(VoiceError, match=r"'gruff'.*describe it with"):
        parse_voice("gruff pirate", "TOM")
    with pytest.raises(VoiceError, match=r"no VITS model at .*save one there"):
        parse_voice(f"vits:{tmp_path / 'missing'}", "TOM")
    with pytest.raises(VoiceError, match="unknown voice engine 'piper'"):
        parse_voice("piper:en_US-amy", "TOM")


def test_speech_is_loud_during_each_line_and_silent_between() -> None:
    speech = speak_beat(
        _spec([("MARA", "Keep the light burning.", ""), ("TOM", "I can hear you.", "V.O.")])
    )
    assert speech is not None and len(speech.cues) == 2 and not speech.grew
    x = speech.samples
    assert len(x) == round(8.0 * SAMPLE_RATE)
    floor = _rms(x[: int(0.3 * SAMPLE_RATE)])
    for cue in speech.cues:
        during = x[int(cue.start_s * SAMPLE_RATE) : int(cue.end_s * SAMPLE_RATE)]
        assert _rms(during) > 0.03 and _rms(during) > 100 * max(floor, 1e-6)
    gap = x[
        int(speech.cues[0].end_s * SAMPLE_RATE) + 100 : int(speech.cues[1].start_s * SAMPLE_RATE)
        - 100
    ]
    assert _rms(gap) < 1e-4
    assert [c.speaker for c in speech.cues] == ["MARA", "TOM"]  # script order
    assert speech.cues[0].end_s < speech.cues[1].start_s
    assert speech.voices["MARA"] != speech.voices["TOM"]


def test_a_beat_too_short_grows_to_fit_its_lines() -> None:
    job = Job(
        job_id="e-b000-a1",
        episode_id="e",
        beat_id="b",
        beat_index=0,
        attempt=1,
        backend="animatic",
        spec=_spec([("MARA", "This line is far too long to fit in one second of film.", "")], 1.0),
    )
    grown, speech = voice_stage(job)
    assert speech is not None and speech.grew
    assert grown.spec.duration_s == speech.duration_s > 2.0
    assert abs(grown.spec.duration_s * 12 - round(grown.spec.duration_s * 12)) < 1e-6
    assert speech.info()["requested_s"] == 1.0
    assert speech.cues[-1].end_s < grown.spec.duration_s


def test_unknown_voice_fails_the_job_permanently() -> None:
    from storyworld.worker.backends.base import PermanentRenderError

    spec = _spec([("TOM", "Hello.", "")]).model_copy(
        update={"dialogue": [SpokenLine(speaker="TOM", text="Hello.", voice="gruff")]}
    )
    job = Job(
        job_id="e-b000-a1",
        episode_id="e",
        beat_id="b",
        beat_index=0,
        attempt=1,
        backend="animatic",
        spec=spec,
    )
    with pytest.raises(PermanentRenderError, match="gruff"):
        voice_stage(job)


def test_loudness_meter_matches_pyloudnorm_and_limiter_holds_the_ceiling() -> None:
    import pyloudnorm

    rng = np.random.default_rng(1)
    n = SAMPLE_RATE * 12
    t = np.arange(n) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 0.4 * t) > 0)
    x = (x + 0.02 * rng.standard_normal(n)).astype(np.float32)
    stereo = np.stack([x, 0.5 * x])
    meter = LoudnessMeter()
    for i in range(0, n, 7777):  # chunk boundaries anywhere
        meter.add(stereo[:, i : i + 7777])
    expected = pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(stereo.T)
    assert abs(meter.integrated() - expected) < 0.01
    loud = stereo * 6
    assert true_peak_db(loud) > 0
    assert true_peak_db(limit_true_peak(loud, -1.0)) <= -1.0


@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random VITS model and its character tokenizer, saved like a real one."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("vits")
    vocab = {c: i for i, c in enumerate(["<pad>", *" abcdefghijklmnopqrstuvwxyz'.,!?"])}
    (d / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = transformers.VitsTokenizer(
        vocab_file=str(d / "vocab.json"), language=None, add_blank=True, phonemize=False
    )
    torch.manual_seed(0)
    config = transformers.VitsConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=16,
        spectrogram_bins=33,
        upsample_initial_channel=16,
        upsample_rates=[8, 8],
        upsample_kernel_sizes=[16, 16],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1,
        duration_predictor_filter_channels=16,
        depth_separable_num_layers=1,
        sampling_rate=16000,
    )
    transformers.VitsModel(config).eval().save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def test_neural_voice_from_a_local_vits_model(tiny_vits: Path) -> None:
    spec = _spec([("MARA", "keep the light burning", "")], 4.0).model_copy(
        update={
            "dialogue": [
                SpokenLine(speaker="MARA", text="keep the light burning", voice=f"vits:{tiny_vits}")
            ]
        }
    )
    a, b = speak_beat(spec), speak_beat(spec)
    assert a is not None and b is not None
    assert a.voices["MARA"] == f"vits:{tiny_vits}"
    cue = a.cues[0]
    assert cue.end_s - cue.start_s > 0.05
    during = a.samples[int(cue.start_s * SAMPLE_RATE) : int(cue.end_s * SAMPLE_RATE)]
    assert _rms(during) > 0.01
    assert np.array_equal(a.samples, b.samples)  # seeded: the same line sounds the same


def test_music_bed_is_ducked_under_dialogue(tmp_path: Path) -> None:
    """A bed (220 Hz) under a beat whose 'speech' is a 1 kHz tone during its cue: the bed
    is at least 10 dB quieter while the line plays than between lines."""
    import wave

    from storyworld.audio import decode_audio
    from storyworld.media import encode_frames
    from storyworld.soundtrack import BeatClip, SoundBeds, add_clip_sound, compose_episode
    from storyworld.subtitles import Cue

    fps, frames = 12, 48  # 4 s
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    speech = np.where((t >= 1.5) & (t < 2.5), 0.1 * np.sin(2 * np.pi * 1000 * t), 0.0)
    silent, clip = tmp_path / "picture.mp4", tmp_path / "clip.mp4"
    encode_frames([np.zeros((36, 64, 3), np.uint8)] * frames, silent, fps=fps, width=64, height=36)
    cue = Cue(1.5, 2.5, "MARA", "Hello.")
    add_clip_sound(silent, clip, speech.astype(np.float32), [cue], frames, fps)
    bed = tmp_path / "bed.wav"
    tb = np.arange(2 * 22050) / 22050
    with wave.open(str(bed), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((0.4 * np.sin(2 * np.pi * 220 * tb) * 32767).astype("<i2").tobytes())
    out = tmp_path / "episode.mp4"
    mix = compose_episode(
        [BeatClip(clip, frames, [cue])],
        out,
        fps=fps,
        width=64,
        height=36,
        beds=SoundBeds(music={0: bed}),
    )
    assert mix.samples == 4 * SAMPLE_RATE and mix.frames == frames
    sound = np.concatenate(list(decode_audio(out)), axis=1).mean(axis=0)

    def band(a: float, b: float, f: float) -> float:
        x = sound[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return float(np.sum(spectrum[(freqs > f - 20) & (freqs < f + 20)] ** 2))

    ducked = 10 * np.log10(band(0.3, 1.1, 220) / band(1.7, 2.3, 220))
    assert ducked >= 10, ducked
    assert band(1.7, 2.3, 1000) > 100 * band(0.3, 1.1, 1000)  # the line plays in its cue


def test_burn_subtitles_draws_them_instead_of_a_track(tmp_path: Path) -> None:
    import av

    from storyworld.media import encode_frames, read_frames
    from storyworld.soundtrack import BeatClip, add_clip_sound, compose_episode
    from storyworld.subtitles import Cue

    fps, frames = 12, 24
    silent, clip = tmp_path / "picture.mp4", tmp_path / "clip.mp4"
    encode_frames(
        [np.full((72, 128, 3), 90, np.uint8)] * frames, silent, fps=fps, width=128, height=72
    )
    cue = Cue(1.0, 1.9, "MARA", "Hello there.")
    add_clip_sound(silent, clip, None, [cue], frames, fps)
    tracked, burnt = tmp_path / "tracked.mp4", tmp_path / "burnt.mp4"
    beats = [BeatClip(clip, frames, [cue])]
    compose_episode(beats, tracked, fps=fps, width=128, height=72)
    compose_episode(beats, burnt, fps=fps, width=128, height=72, burn_subtitles=True)
    with av.open(str(tracked)) as a, av.open(str(burnt)) as b:
        assert len(a.streams.subtitles) == 1 and len(b.streams.subtitles) == 0
    plain = list(read_frames(tracked))
    drawn = list(read_frames(burnt))
    bottom = slice(50, 72)
    assert np.abs(plain[6][bottom].astype(int) - drawn[6][bottom]).max() < 12  # before the cue
    assert np.abs(plain[17][bottom].astype(int) - drawn[17][bottom]).mean() > 10  # during it


def test_engine_gives_each_line_its_cast_voice_and_refuses_bad_sound(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from storyworld.config import ConfigError
    from storyworld.engine.planner import plan_script
    from storyworld.engine.sound import check_sound, dialogue_fields, sound_options

    cast = {
        "path": str(tmp_path / "x.cast.toml"),
        "style": {"music": "theme.ogg"},
        "characters": [
            {"name": "Mara", "description": "keeper, yellow oilskin", "voice": "alto, weathered"}
        ],
        "scenes": {"INT. DINER - DAY": {"music": "diner.wav"}},
    }
    options = {"film": {"cast": cast}}
    beat = SimpleNamespace(
        captions=["MARA (V.O.): Keep it burning.", "TOM: I will."], text="Mara and Tom."
    )
    fields = dialogue_fields(options, beat, ["MARA", "TOM"])  # type: ignore[arg-type]
    assert [(d.speaker, d.extension, d.voice) for d in fields["dialogue"]] == [
        ("MARA", "V.O.", "alto, weathered"),
        ("TOM", "", ""),
    ]
    assert fields["characters"] == ["MARA", "TOM"]
    assert fields["character_notes"] == {"MARA": "keeper, yellow oilskin"}
    sound = sound_options(cast_path=cast["path"], cast_json=cast)
    assert sound["music"] == str(tmp_path / "theme.ogg")  # relative to the cast file
    assert sound["scenes"] == {"INT. DINER - DAY": str(tmp_path / "diner.wav")}
    plan = plan_script("INT. DINER - DAY\n\nMara waits.\n")
    import pytest as _pytest

    with _pytest.raises(ConfigError, match=r"theme\.ogg does not exist"):
        check_sound(plan, {**options, "sound": sound})
    (tmp_path / "theme.ogg").write_bytes(b"not a sound file at all")
    with _pytest.raises(ConfigError, match=r"cannot be decoded.*WAV, FLAC"):
        check_sound(plan, {**options, "sound": {"music": str(tmp_path / "theme.ogg")}})
    bad = {"film": {"cast": {**cast, "characters": [{"name": "Tom", "voice": "gruff"}]}}}
    with _pytest.raises(ConfigError, match=r"cast: voice 'gruff' of TOM"):
        check_sound(plan, bad)


def test_keyframe_stage_is_not_voiced() -> None:
    spec = _spec([("MARA", "Hello.", "")], 1.0).model_copy(
        update={"options": {"stage": "keyframe"}}
    )
    job = Job(
        job_id="e-b000-a1",
        episode_id="e",
        beat_id="b",
        beat_index=0,
        attempt=1,
        backend="animatic",
        spec=spec,
    )
    assert voice_stage(job) == (job, None)


def test_clip_jobs_carry_dialogue_voices_and_no_double_subtitles() -> None:
    from storyworld.engine.dispatch import build_job
    from storyworld.engine.models import Beat, Episode

    ep = Episode(
        id="ep1",
        title="T",
        script="",
        script_format="fountain",
        backend="animatic",
        width=64,
        height=36,
        fps=12,
        steps=None,
        seed=None,
        state="rendering",
        options={"sound": {"burn_subtitles": True}},
    )
    beat = Beat(
        id="b1",
        episode_id="ep1",
        index=0,
        text="Tom waits for Mara.",
        scene="EXT. PIER",
        captions=["MARA (O.S.): Tom?"],
        duration_s=2.0,
        backend="animatic",
        state="pending",
    )
    ep.beats = [beat]
    spec = build_job(ep, beat, 1).spec
    assert [(d.speaker, d.text, d.extension) for d in spec.dialogue] == [("MARA", "Tom?", "O.S.")]
    assert spec.characters == ["MARA"]
    assert spec.options["previs_subtitles"] is False and "sound" not in spec.options


def test_centered_text_reaches_the_previs_as_a_title_card() -> None:
    from storyworld.engine.dispatch import build_job
    from storyworld.engine.models import Beat, Episode
    from storyworld.engine.planner import plan_script
    from storyworld.engine.sound import beat_marks

    plan = plan_script("INT. A - DAY\n\nAl waits.\n\n> THE END <\n")
    options = beat_marks(plan)
    assert options == {"title_cards": [1]}
    ep = Episode(
        id="ep1",
        title="T",
        script="",
        script_format="fountain",
        backend="animatic",
        width=64,
        height=36,
        fps=12,
        steps=None,
        seed=None,
        state="rendering",
        options=options,
    )
    beats = [
        Beat(id=f"b{b.index}", episode_id="ep1", index=b.index, text=b.text, scene=b.scene,
             captions=[], duration_s=b.duration_s, backend="animatic", state="pending")
        for b in plan.beats
    ]  # fmt: skip
    ep.beats = beats
    assert "centered" not in build_job(ep, beats[0], 1).spec.options
    assert build_job(ep, beats[1], 1).spec.options["centered"] is True


def test_vits_voice_from_the_hugging_face_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        VoiceError, match=r"not in the Hugging Face cache.*huggingface-cli download"
    ):
        parse_voice("vits:facebook/mms-tts-eng", "MARA")
    # As the hub lays a cached model out: refs/main names the snapshot holding the files.
    repo = tmp_path / "hub" / "models--facebook--mms-tts-eng"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert parse_voice("vits:facebook/mms-tts-eng", "MARA").model == "facebook/mms-tts-eng"
