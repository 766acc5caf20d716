"""WebVTT and SRT: one cue per line with its speaker, read back as written."""

from __future__ import annotations

from storyworld.subtitles import Cue, parse_srt, parse_vtt, shift, to_srt, to_vtt

CUES = [
    Cue(0.358, 1.535, "MARA", "Keep the light <burning> & the door shut --> now."),
    Cue(3661.5, 3662.25, "INSPECTOR HALE", "Second\nline."),
]


def test_vtt_has_voice_spans_and_round_trips() -> None:
    text = to_vtt(CUES)
    assert text.startswith("WEBVTT\n\n1\n00:00:00.358 --> 00:00:01.535\n<v MARA>Keep the light")
    assert "01:01:01.500 --> 01:01:02.250" in text
    assert "&lt;burning&gt; &amp;" in text and "--> now" not in text
    back = parse_vtt(text)
    assert [(c.speaker, c.start_s, c.end_s) for c in back] == [
        ("MARA", 0.358, 1.535),
        ("INSPECTOR HALE", 3661.5, 3662.25),
    ]
    assert back[0].text == "Keep the light <burning> & the door shut -> now."
    assert back[1].text == "Second line."


def test_srt_names_the_speaker_and_round_trips() -> None:
    text = to_srt(CUES)
    assert text.startswith("1\n00:00:00,358 --> 00:00:01,535\nMARA: Keep the light")
    back = parse_srt(text)
    assert [(c.speaker, c.text) for c in back] == [
        ("MARA", "Keep the light <burning> & the door shut -> now."),
        ("INSPECTOR HALE", "Second line."),
    ]


def test_shift_moves_beat_cues_onto_the_episode_timeline() -> None:
    (moved,) = shift([Cue(0.5, 1.0, "TOM", "Hi.")], 10.0)
    assert (moved.start_s, moved.end_s) == (10.5, 11.0)
