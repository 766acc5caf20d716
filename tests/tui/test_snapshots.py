"""SVG snapshots of the console's screens with fixed data and a frozen clock
(pytest-textual-snapshot; update with `pytest tests/tui --snapshot-update`)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from storyworld.tui.dead_letters import DeadLettersScreen
from storyworld.tui.episode import EpisodeScreen
from storyworld.tui.new_episode import NewEpisodeScreen

from .conftest import rows_of, text_of, until
from .sample import EP, sample_app

SIZE = (160, 48)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Times on screen are local times: pin the zone so baselines match everywhere (and
    colours on, whatever the environment says)."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.delenv("NO_COLOR", raising=False)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("size", [(100, 30), (160, 48), (220, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_dashboard(snap_compare, size) -> None:  # type: ignore[no-untyped-def]
    """At 100x30 heartbeat, done and failed stay on screen (the worker table drops padding
    and the least useful columns); at 220x60 episode titles get the room there is."""

    async def settle(pilot) -> None:  # type: ignore[no-untyped-def]
        await until(pilot, lambda: rows_of(pilot.app.screen.query_one("#workers")))
        await pilot.pause()

    assert snap_compare(sample_app(), terminal_size=size, run_before=settle)


def test_dashboard_fits_100_columns() -> None:
    """What the 100x30 snapshot shows, as assertions: every worker column that matters is
    inside the screen and the status line is not cut."""
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: rows_of(app.screen.query_one("#workers")))
            await pilot.pause()
            table = app.screen.query_one("#workers")
            widths = {str(k.value): c.get_render_width(table) for k, c in table.columns.items()}
            visible = sum(widths.values())
            assert visible <= table.size.width, (widths, table.size.width)
            status = app.screen.query_one("#status")
            assert "Storage" in text_of(status)
            assert len(rows_of(app.screen.query_one("#episodes"))) == 5

    from .conftest import run

    run(scenario())


def test_episode_titles_use_the_room_at_220_columns() -> None:
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=(220, 60)) as pilot:
            await until(pilot, lambda: rows_of(app.screen.query_one("#episodes")))
            await pilot.pause()
            table = app.screen.query_one("#episodes")
            title = next(c for k, c in table.columns.items() if str(k.value) == "title")
            assert title.width > 40

    from .conftest import run

    run(scenario())


def test_episode_detail(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_detail(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await until(pilot, lambda: rows_of(app.screen.query_one("#episodes")))
        app.open_episode(EP)
        screen = await until(pilot, lambda: isinstance(app.screen, EpisodeScreen) and app.screen)
        await until(pilot, lambda: "▀" in text_of(screen.query_one("#keyframe")))
        await pilot.pause()

    assert snap_compare(sample_app(), terminal_size=SIZE, run_before=open_detail)


def test_new_episode_with_the_example(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_form(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await until(pilot, lambda: rows_of(app.screen.query_one("#episodes")))
        await pilot.press("e")
        screen = await until(pilot, lambda: isinstance(app.screen, NewEpisodeScreen) and app.screen)
        await until(pilot, lambda: len(rows_of(screen.query_one("#plan"))) == 3)
        await pilot.pause()

    assert snap_compare(sample_app(), terminal_size=SIZE, run_before=open_form)


def test_dead_letters(snap_compare) -> None:  # type: ignore[no-untyped-def]
    async def open_dead(pilot) -> None:  # type: ignore[no-untyped-def]
        app = pilot.app
        await until(pilot, lambda: rows_of(app.screen.query_one("#episodes")))
        await pilot.press("d")
        screen = await until(
            pilot, lambda: isinstance(app.screen, DeadLettersScreen) and app.screen
        )
        await until(pilot, lambda: len(rows_of(screen.query_one("#dead"))) == 2)
        await pilot.pause()

    assert snap_compare(sample_app(), terminal_size=SIZE, run_before=open_dead)
