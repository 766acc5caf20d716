"""The operator console (Textual app).

The app never does I/O itself: snapshots arrive from a `Source` as messages and are applied
inside `batch_update()`; actions run in worker threads and report back. Data source, actions
and clock come through the constructor, so tests use fixed data and a frozen clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError
from textual.app import App, ScreenStackError, SystemCommand
from textual.css.query import NoMatches
from textual.markup import escape
from textual.message import Message
from textual.screen import Screen

from storyworld.config import ConfigError, redact
from storyworld.engine.errors import DEPENDENCY_ERRORS, Unavailable, translate
from storyworld.engine.jobs import JobQuery
from storyworld.engine.models import IllegalTransition
from storyworld.engine.planner import ScriptError, ScriptPlan
from storyworld.engine.services import NotFound
from storyworld.protocol import KNOWN_BACKENDS
from storyworld.tui.commands import commands_for
from storyworld.tui.dashboard import Dashboard
from storyworld.tui.data import Snapshot
from storyworld.tui.dead_letters import DeadLettersScreen
from storyworld.tui.episode import EpisodeScreen
from storyworld.tui.fleet import FleetScreen
from storyworld.tui.history import HistoryScreen
from storyworld.tui.jobs import JobsScreen
from storyworld.tui.new_episode import NewEpisodeScreen
from storyworld.tui.screens import LiveScreen, StoppingScreen
from storyworld.tui.source import Source
from storyworld.tui.webhooks import WebhooksScreen
from storyworld.tui.widgets import KeyedTable, Tones, tones_for

__all__ = ["ActionsLike", "ConsoleApp", "SnapshotReady", "user_message"]

T = TypeVar("T")


class ActionsLike(Protocol):
    """What the console can change (storyworld.tui.control.Actions)."""

    def plan(self, text: str, fmt: str | None = None) -> ScriptPlan: ...
    def create_episode(
        self, *, script: str, title: str = "", backend: str | None = None, fmt: str | None = None
    ) -> dict[str, Any]: ...
    def retry(self, episode_id: str, beat: int | None = None) -> dict[str, Any]: ...
    def cancel(self, episode_id: str) -> dict[str, Any]: ...
    def requeue_dead(self, job_ids: list[str] | None) -> dict[str, Any]: ...
    def bulk_jobs(self, query: JobQuery, action: str, expect: int) -> dict[str, Any]: ...
    def command_worker(self, worker_id: str, command: str) -> dict[str, Any]: ...
    def set_backend_paused(self, backend: str, paused: bool) -> dict[str, Any]: ...
    def drop_dead(self, job_ids: list[str] | None) -> dict[str, Any]: ...
    def set_paused(self, paused: bool) -> None: ...


def open_in_system_player(url: str) -> None:
    """Hand a file URL or a link to the desktop's default application, without waiting."""
    import subprocess
    import sys
    from urllib.parse import unquote, urlparse

    target = unquote(urlparse(url).path) if url.startswith("file://") else url
    if sys.platform == "darwin":
        command = ["open", target]
    elif sys.platform.startswith("win"):
        import os

        os.startfile(target)  # type: ignore[attr-defined]
        return
    else:
        command = ["xdg-open", target]
    try:
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip
    except FileNotFoundError:
        raise ConfigError(f"{command[0]} is not installed: open {target} yourself") from None


class SnapshotReady(Message):
    """A new snapshot from the source (posted from its thread)."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


def user_message(exc: BaseException) -> str:
    """A one-line, secret-free message for a failed action."""
    if isinstance(exc, (ConfigError, NotFound, ScriptError, IllegalTransition)):
        text = str(exc)
    elif isinstance(exc, (*DEPENDENCY_ERRORS, Unavailable)):
        text = str(translate(exc))  # Redis, storage: the engine's words (engine.errors)
    elif isinstance(exc, SQLAlchemyError):
        text = "database unreachable: nothing was changed; try again when it is back"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text)


class ConsoleApp(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "StoryWorld"

    def __init__(
        self,
        source: Source,
        actions: ActionsLike | None = None,
        *,
        clock: Callable[[], float] = time.time,
        example_script: str = "",
        backends: Iterable[str] = KNOWN_BACKENDS,
        default_backend: str = "animatic",
        planner: Callable[[str, str | None], ScriptPlan] | None = None,
        shutdown: Callable[[], None] | None = None,
        tick_s: float = 1.0,
        steady: bool = False,
        opener: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.actions = actions
        self.clock = clock
        self.example_script = example_script
        self.backends = list(backends)
        self.default_backend = default_backend
        self._planner = planner
        self._on_quit = shutdown
        self.tick_s = tick_s
        self.steady = steady  # tests: no blinking cursors or animations
        self.opener = opener or open_in_system_player
        self.snapshot: Snapshot | None = None
        self._tones: Tones | None = None
        self._quitting = False
        self.render_count = 0
        self.render_seconds = 0.0
        self.last_render_s = 0.0
        if steady:
            self.animation_level = "none"

    @property
    def read_only(self) -> bool:
        return self.actions is None

    @property
    def tones(self) -> Tones:
        if self._tones is None:
            self._tones = tones_for(self)
        return self._tones

    # ------------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        self.push_screen(Dashboard())
        self.source.start(self._from_source)
        self.set_interval(self.tick_s, self.render_snapshot)

    def _from_source(self, snapshot: Snapshot) -> None:
        self.post_message(SnapshotReady(snapshot))  # thread-safe

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.render_snapshot()

    def render_snapshot(self) -> None:
        """Show the latest snapshot on the top screen (a screen under a modal waits)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return  # closing
        if self.snapshot is None or not isinstance(screen, LiveScreen) or not screen.ready:
            return
        started = time.perf_counter()
        try:
            with self.batch_update():
                screen.show(self.snapshot, self.clock())
        except NoMatches:
            return  # the screen is being torn down (closing, or popped)
        self.last_render_s = time.perf_counter() - started
        self.render_seconds += self.last_render_s
        self.render_count += 1

    def _theme_changed(self, _theme: object) -> None:
        self._tones = None
        for screen in self.screen_stack:
            for table in screen.query(KeyedTable):
                table.forget_styles()
        self.render_snapshot()

    def on_unmount(self) -> None:
        self.source.stop()

    def request_quit(self) -> None:
        """Quit: stop the source and, if this console runs them, the engine and workers
        (in a thread, with a notice), then exit."""
        if self._quitting:
            return
        self._quitting = True
        if self._on_quit is None:
            self.exit(0)
            return
        self.push_screen(StoppingScreen())
        shutdown = self._on_quit

        def stop() -> None:
            try:
                self.source.stop()
                shutdown()
            finally:
                self.call_from_thread(self.exit, 0)

        self.run_worker(stop, thread=True, group="quit", exit_on_error=False)

    async def action_quit(self) -> None:
        self.request_quit()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications carry ids, errors and user text: never read as markup."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # ------------------------------------------------------------------ palette
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        own = commands_for(getattr(screen, "SCREEN_ID", ""), read_only=self.read_only)
        titles = {c.title for c in own}
        for cmd in super().get_system_commands(screen):
            if cmd.title not in titles:
                yield cmd
        for c in own:
            key = c.key_display or c.key
            # Palette help is Textual markup: a key such as "/" would read as a closing tag.
            yield SystemCommand(
                escape(c.title), escape(f"{c.help}  [{key}]"), partial(screen.run_action, c.action)
            )

    # ------------------------------------------------------------------ I/O helpers
    def run_io(
        self,
        what: str,
        fn: Callable[[], T],
        done: Callable[[T], None] | None = None,
        *,
        group: str | None = None,
        quiet: bool = False,
    ) -> None:
        """Run blocking `fn` in a worker thread; `done(result)` runs on the UI thread;
        a failure becomes a notification, never a crash."""

        def job() -> None:
            try:
                result = fn()
            except Exception as e:
                self._call_ui(self._failed, what, e, quiet)
                return
            if done is not None:
                self._call_ui(done, result)

        self.run_worker(
            job,
            thread=True,
            exclusive=True,
            group=group or what,
            exit_on_error=False,
            description=what,
        )

    def _call_ui(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            self.call_from_thread(fn, *args)
        except RuntimeError:
            pass  # the app is closing

    def _failed(self, what: str, exc: BaseException, quiet: bool) -> None:
        self.notify(f"{what} failed: {user_message(exc)}", severity="error", timeout=8)

    def _act(self, what: str, fn: Callable[[], T], done: Callable[[T], None] | None = None) -> None:
        if self.actions is None:
            self.notify("Read-only: no actions", severity="warning", timeout=3)
            return

        def after(result: T) -> None:
            self.source.refresh()
            if done is not None:
                done(result)

        self.run_io(what, fn, after)

    # ------------------------------------------------------------------ navigation
    def open_episode(self, episode_id: str) -> None:
        self.push_screen(EpisodeScreen(episode_id))

    def open_dead_letters(self) -> None:
        self.push_screen(DeadLettersScreen())

    def open_jobs(self, query: str = "") -> None:
        self.push_screen(JobsScreen(query))

    def open_webhooks(self) -> None:
        self.push_screen(WebhooksScreen())

    def open_history(self) -> None:
        self.push_screen(HistoryScreen())

    def open_fleet(self) -> None:
        self.push_screen(FleetScreen())

    def command_worker(self, worker_id: str, command: str) -> None:
        actions = self.actions
        if actions is None:
            return
        self._act(
            command.capitalize(),
            lambda: actions.command_worker(worker_id, command),
            lambda _: self.notify(f"Sent {command} to worker {worker_id}", timeout=4),
        )

    def set_backend_paused(
        self, backend: str, paused: bool, then: Callable[[], None] | None = None
    ) -> None:
        actions = self.actions
        if actions is None:
            return

        def done(_: Any) -> None:
            self.notify(f"Dispatch to {backend} {'paused' if paused else 'resumed'}", timeout=4)
            if then is not None:
                then()

        self._act("Pause backend", lambda: actions.set_backend_paused(backend, paused), done)

    def new_episode(self, *, example: bool) -> None:
        if self.read_only:
            return
        self.push_screen(NewEpisodeScreen(example=example))

    def plan(self, text: str, fmt: str | None) -> ScriptPlan:
        if self._planner is not None:
            return self._planner(text, fmt)
        if self.actions is None:
            raise ScriptError("read-only: no planning")
        return self.actions.plan(text, fmt)

    # ------------------------------------------------------------------ actions
    def create_episode(self, *, script: str, title: str, backend: str, fmt: str | None) -> None:
        actions = self.actions
        assert actions is not None

        def done(detail: dict[str, Any]) -> None:
            self.notify(
                f"Episode {detail['id']} created: {detail['beats_total']} beats on "
                f"{detail['backend']}",
                timeout=4,
            )
            if isinstance(self.screen, NewEpisodeScreen):
                self.pop_screen()
            self.open_episode(detail["id"])

        self._act(
            "Create episode",
            lambda: actions.create_episode(script=script, title=title, backend=backend, fmt=fmt),
            done,
        )

    def retry(self, episode_id: str, beat: int | None) -> None:
        actions = self.actions
        if actions is None:
            return
        which = f"beat {beat + 1}" if beat is not None else "the failed beats"
        self._act(
            "Retry",
            lambda: actions.retry(episode_id, beat),
            lambda d: self.notify(f"Rendering {which} of {d['id']} again", timeout=4),
        )

    def cancel(self, episode_id: str, screen: LiveScreen) -> None:
        actions = self.actions
        if actions is None:
            return

        def go() -> None:
            self._act(
                "Cancel",
                lambda: actions.cancel(episode_id),
                lambda d: self.notify(f"Episode {d['id']} cancelled", timeout=4),
            )

        screen.confirm(
            f"Cancel episode {episode_id}? Waiting jobs are withdrawn and workers stop its jobs.",
            go,
            yes="Cancel episode",
        )

    def toggle_pause(self) -> None:
        actions = self.actions
        if actions is None:
            return
        paused = not (self.snapshot.engine.paused if self.snapshot else False)
        self._act(
            "Pause" if paused else "Resume",
            lambda: actions.set_paused(paused),
            lambda _: self.notify(
                "Dispatch paused: no new jobs go out" if paused else "Dispatch resumed",
                timeout=4,
            ),
        )

    def requeue(self, job_ids: list[str] | None) -> None:
        actions = self.actions
        if actions is None:
            return

        def done(out: dict[str, Any]) -> None:
            msg = f"Requeued {out['requeued']} dead letter(s)"
            if out.get("refused"):
                msg += f"; refused {len(out['refused'])} (their episodes moved on)"
            self.notify(msg, timeout=5)

        self._act("Requeue", lambda: actions.requeue_dead(job_ids), done)

    def drop(self, job_ids: list[str] | None) -> None:
        actions = self.actions
        if actions is None:
            return
        self._act(
            "Drop",
            lambda: actions.drop_dead(job_ids),
            lambda out: self.notify(f"Dropped {out['dropped']} dead letter(s)", timeout=5),
        )

    def bulk_jobs(self, query: JobQuery, action: str, expect: int) -> None:
        """Apply a bulk action to what `query` selects (the operator confirmed `expect`)."""
        actions = self.actions
        if actions is None:
            return

        def done(out: dict[str, Any]) -> None:
            msg = f"{action.capitalize()}: {out['done']} of {out['selected']} job(s)"
            if out.get("skipped"):
                msg += f"; skipped {len(out['skipped'])}: {out['skipped'][0]}"
            self.notify(msg, timeout=6)
            if isinstance(self.screen, JobsScreen):
                self.screen.load()

        self._act(action.capitalize(), lambda: actions.bulk_jobs(query, action, expect), done)

    def play(self, key: str) -> None:
        """Open an artifact in the system's player (its file locally, its URL on S3)."""
        opener = self.opener

        def done(url: str) -> None:
            self.notify(f"Opening {url}", timeout=4)

        def go() -> str:
            url = self.source.link(key)
            opener(url)
            return url

        self.run_io("Play", go, done)

    def copy_link(self, key: str) -> None:
        """Copy an artifact's link (presigned URL, public URL or file URL)."""

        def done(url: str) -> None:
            self.copy_to_clipboard(url)
            self.notify(f"Copied {url}", timeout=6)

        self.run_io("Copy link", lambda: self.source.link(key), done)
