"""The command palette on every screen: it opens, lists the screen's commands (with help
texts that are escaped, whatever characters they hold), and runs every one of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.screen import Screen
from textual.widgets import Input, Static

from storyworld.tui.app import ConsoleApp
from storyworld.tui.commands import COMMANDS, commands_for
from storyworld.tui.dead_letters import DeadLettersScreen
from storyworld.tui.episode import EpisodeScreen
from storyworld.tui.fleet import FleetScreen
from storyworld.tui.history import HistoryScreen
from storyworld.tui.jobs import JobsScreen
from storyworld.tui.keyframes import KeyframesScreen
from storyworld.tui.new_episode import NewEpisodeScreen
from storyworld.tui.screens import ConfirmScreen, LiveScreen
from storyworld.tui.webhooks import WebhooksScreen

from .conftest import rows_of, run, text_of, until
from .sample import EP, sample_app

SIZE = (160, 48)

Opener = Callable[[Any], Awaitable[Screen[Any]]]


async def _dashboard(pilot: Any) -> Screen[Any]:
    await until(pilot, lambda: rows_of(pilot.app.screen.query_one("#episodes")))
    return pilot.app.screen


def _opener(kind: type[Screen[Any]], open_it: Callable[[ConsoleApp], None]) -> Opener:
    async def go(pilot: Any) -> Screen[Any]:
        app = pilot.app
        await _dashboard(pilot)
        open_it(app)
        return await until(pilot, lambda: isinstance(app.screen, kind) and app.screen)

    return go


SCREENS: dict[str, Opener] = {
    "dashboard": _dashboard,
    "episode": _opener(EpisodeScreen, lambda app: app.open_episode(EP)),
    "new": _opener(NewEpisodeScreen, lambda app: app.new_episode(example=True)),
    "dead": _opener(DeadLettersScreen, lambda app: app.open_dead_letters()),
    "jobs": _opener(JobsScreen, lambda app: app.open_jobs()),
    "webhooks": _opener(WebhooksScreen, lambda app: app.open_webhooks()),
    "history": _opener(HistoryScreen, lambda app: app.open_history()),
    "fleet": _opener(FleetScreen, lambda app: app.open_fleet()),
    "keyframes": _opener(KeyframesScreen, lambda app: app.push_screen(KeyframesScreen(EP))),
}


def test_every_screen_with_commands_is_covered() -> None:
    screens = {s for c in COMMANDS for s in c.screens if s != "*"}
    assert screens <= set(SCREENS), screens - set(SCREENS)


async def _run_from_palette(pilot: Any, title: str) -> None:
    app = pilot.app
    await pilot.press("ctrl+p")
    palette = await until(pilot, lambda: isinstance(app.screen, CommandPalette) and app.screen)
    palette.query_one(Input).value = title.lower()  # as if typed, one search instead of many
    # The highlighted hit is the command whose title matches exactly.
    await until(
        pilot,
        lambda: (
            palette._list_visible
            and str(palette.query_one("CommandList").get_option_at_index(0).prompt).startswith(
                title
            )
        ),
        what=f"{title!r} listed first",
    )
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette), what="palette closed")


@pytest.mark.parametrize("screen_id", list(SCREENS))
def test_the_palette_runs_every_command_of_each_screen(screen_id: str) -> None:
    app = sample_app()
    ran: list[str] = []

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await SCREENS[screen_id](pilot)
            listed = {c.title for c in app.get_system_commands(screen)}
            own = commands_for(screen_id)
            assert {c.title for c in own} <= listed
            # Back leaves the screen and quit the console: those two run last.
            order = [c for c in own if c.id not in ("back", "quit")]
            order += [c for c in own if c.id == "back"]
            for c in order:
                # Every command resolves to an action of the screen (a typo would be a
                # silent no-op in Textual).
                assert hasattr(screen, f"action_{c.action}"), (screen_id, c.action)
                await _run_from_palette(pilot, c.title)
                ran.append(c.id)
                # Whatever the command opened (a confirmation, another screen, the help),
                # close it and come back to the screen under test.
                while app.screen is not screen and c.id != "back":
                    top = app.screen
                    if isinstance(top, ConfirmScreen):
                        await pilot.press("n")
                    elif isinstance(top, LiveScreen) or top.is_modal:
                        top.dismiss(None)
                    else:
                        app.pop_screen()
                    await until(pilot, lambda top=top: app.screen is not top)
                if c.id == "back":
                    await until(pilot, lambda: app.screen is not screen, what="back")
                    break
                assert app.return_code is None, f"{c.id} stopped the console"
            if any(c.id == "quit" for c in own):
                await _run_from_palette(pilot, "Quit")
                await until(pilot, lambda: app.return_code == 0, what="quit through the palette")
                ran.append("quit")

    run(scenario())
    assert sorted(ran) == sorted(c.id for c in commands_for(screen_id))


def test_help_texts_reach_the_palette_unchanged() -> None:
    """Help texts with brackets ("/", "[4s]") are shown as written, not read as markup."""
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await _dashboard(pilot)
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette))
            await pilot.press(*"filter logs")
            palette = app.screen
            await until(pilot, lambda: palette._list_visible)
            prompt = palette.query_one("CommandList").get_option_at_index(0).prompt
            assert "[/]" in str(prompt.plain if hasattr(prompt, "plain") else prompt)
            assert screen is not None

    run(scenario())


def test_play_opens_the_clip_and_the_episode_in_the_system_player() -> None:
    from .sample import OPENED, detail

    app = sample_app()
    OPENED.clear()
    d = detail()

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await SCREENS["episode"](pilot)
            beats = await until(pilot, lambda: screen.query_one("#beats"))
            await until(pilot, lambda: rows_of(beats))
            beats.move_cursor(row=0)
            await pilot.press("o")
            clip = d["beats"][0]["clip_key"]
            await until(pilot, lambda: [f"https://artifacts.example/{clip}"] == OPENED)
            await pilot.press("O")
            if d.get("output_key"):
                await until(pilot, lambda: len(OPENED) == 2)
                assert OPENED[1].endswith(d["output_key"])

    run(scenario())


def test_compare_attempts_side_by_side() -> None:
    from storyworld.tui.attempts import AttemptsScreen

    from .sample import detail

    d = detail()
    d["beats"][0]["jobs"] = [
        {"job_id": f"{EP}-b000-a1", "attempt": 1, "state": "failed", "backend": "svd",
         "worker": "pod-a", "render_s": None, "error": "CUDA out of memory"},
        {"job_id": f"{EP}-b000-a2", "attempt": 2, "state": "succeeded", "backend": "svd",
         "worker": "pod-b", "render_s": 41.5, "error": None},
    ]  # fmt: skip
    d["artifacts"] = [dict(a, job_id=f"{EP}-b000-a2") if a["beat_id"] == d["beats"][0]["id"]
                      else a for a in d["artifacts"]]  # fmt: skip
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await _dashboard(pilot)
            app.push_screen(AttemptsScreen(d, d["beats"][0]))
            screen = await until(
                pilot, lambda: isinstance(app.screen, AttemptsScreen) and app.screen
            )
            first = await until(pilot, lambda: screen.query_one("#attempt-1", Static))
            second = screen.query_one("#attempt-2", Static)
            assert "CUDA out of memory" in text_of(first) and "pod-a" in text_of(first)
            await until(pilot, lambda: "▀" in text_of(second), what="attempt 2's keyframe drawn")
            assert "▀" not in text_of(first)  # attempt 1 made no keyframe
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, AttemptsScreen))

    run(scenario())


def test_keyframes_are_real_images_where_the_terminal_can_show_them(monkeypatch) -> None:
    """On a kitty or sixel terminal the keyframe is textual-image's widget (here a stand-in
    with its interface: the terminal under test shows neither); elsewhere half blocks."""
    from textual.widget import Widget

    from storyworld.tui import images

    assert images.probe() == "half blocks"  # no terminal to ask under pytest
    shown: list[Any] = []

    class FakeImage(Widget):
        def __init__(self, image: Any, **kw: Any) -> None:
            super().__init__(**kw)
            self.image = image
            shown.append(image)

    monkeypatch.setattr(images, "_widget", FakeImage)
    app = sample_app()

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            screen = await SCREENS["episode"](pilot)
            await until(pilot, lambda: screen.query("#keyframe-image"), what="the image widget")
            assert shown and shown[0].size == (96, 54)
            assert "▀" not in text_of(screen.query_one("#keyframe", Static))

    run(scenario())
