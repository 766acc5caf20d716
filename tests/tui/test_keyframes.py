"""The keyframe grid driven with the keyboard through a pilot: an episode stopped for
approval, a re-roll of beat 2, approve all; assertions look at the database too."""

from __future__ import annotations

from test_film_flow import SCRIPT, write_cast

from storyworld.engine import services
from storyworld.engine.cast import load_cast
from storyworld.engine.planner import plan_script
from storyworld.tui.episode import EpisodeScreen
from storyworld.tui.keyframes import KeyframesScreen, cell_caption

from .conftest import run, text_of, until

SIZE = (160, 60)


def _detail(rt, episode_id):  # type: ignore[no-untyped-def]
    return services.episode_detail(rt, episode_id)


def test_approve_and_reroll_from_the_keyframe_grid(
    runtime, background, make_console, tmp_path
) -> None:
    cast = load_cast(write_cast(tmp_path))
    ep = services.create_episode(
        runtime, plan_script(SCRIPT), script=SCRIPT, cast=cast, approve=True, fps=8
    )["id"]
    background.worker(runtime)
    c = make_console()

    async def scenario() -> None:
        app = c.app
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: _detail(runtime, ep)["state"] == "awaiting_approval",
                timeout=40,
                what="the episode stops for approval",
            )
            app.open_episode(ep)
            detail = await until(
                pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen
            )
            # The episode screen shows the highlighted beat's characters and score.
            await until(
                pilot,
                lambda: "characters: Mara" in text_of(detail.query_one("#beat-text")),
                what="characters on the episode screen",
            )
            assert "keyframe score 0." in text_of(detail.query_one("#beat-text"))
            await pilot.press("k")
            grid = await until(
                pilot, lambda: isinstance(app.screen, KeyframesScreen) and app.screen
            )
            await until(
                pilot,
                lambda: "awaiting_approval" in text_of(grid.query_one("#keyframes-header")),
                what="header says awaiting approval",
            )
            cells = await until(pilot, lambda: len(grid._cells) == 3 and grid._cells)
            await until(
                pilot,
                lambda: all("▀" in text_of(cell) for cell in cells),
                what="three keyframes drawn in half blocks",
            )
            assert "Mara, Tom" in text_of(cells[2]) and "⏸ awaiting approval" in text_of(cells[0])
            assert "score 0." in text_of(cells[0]) and "score –" in text_of(cells[1])

            await pilot.press("right")  # beat 2
            assert grid.selected == 1 and cells[1].has_class("-selected")
            await pilot.press("r")
            await until(
                pilot,
                lambda: (
                    (d := _detail(runtime, ep))["state"] == "awaiting_approval"
                    and [len(b["jobs"]) for b in d["beats"]] == [1, 2, 1]
                ),
                timeout=40,
                what="beat 2 alone re-rolled",
            )
            await pilot.press("A")
            await until(
                pilot,
                lambda: _detail(runtime, ep)["state"] == "completed",
                timeout=40,
                what="the approved episode completes",
            )
            await until(
                pilot,
                lambda: "✓ approved" in text_of(grid._cells[1]),
                what="the grid shows the approval",
            )

    run(scenario())


def test_cell_caption_never_relies_on_colour() -> None:
    beat = {"index": 0, "stage": "approval", "score": 0.5, "characters": ["Mara"]}
    assert cell_caption(beat).plain.splitlines() == [
        "Beat 1  ⏸ awaiting approval",
        "score 0.500",
        "Mara",
    ]
    flagged = {**beat, "stage": "clip", "approved": True, "flagged": True, "characters": []}
    assert "✓ approved" in cell_caption(flagged).plain
    assert "⚑ below CONSISTENCY_MIN" in cell_caption(flagged).plain
