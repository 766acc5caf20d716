"""The render command's progress: beats done, percent and an ETA."""

from __future__ import annotations


def test_progress_line_shows_beats_done_percent_and_eta() -> None:
    import io

    from storyworld.cli import ProgressView

    now = [100.0]
    view = ProgressView(io.StringIO(), clock=lambda: now[0])
    detail = {"id": "e1", "title": "Feature", "state": "rendering", "beats_total": 900}
    assert view.headline({**detail, "beats_done": 0}) == "Feature [rendering] 0/900 beats 0%"
    now[0] = 160.0  # 60 s for 90 beats: 810 left take 540 s
    line = view.headline({**detail, "beats_done": 90})
    assert line == "Feature [rendering] 90/900 beats 10% ETA 9:00"
    out = io.StringIO()
    pipe = ProgressView(out, clock=lambda: now[0])
    for done in (0, 10, 50, 90):
        pipe.show({**detail, "beats_done": done, "beats": []}, {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Feature [rendering] 0/900 beats 0%")
    assert lines[1] == "episode e1: rendering"
    assert len(lines) == 4  # one line per 5 %, not one per beat
