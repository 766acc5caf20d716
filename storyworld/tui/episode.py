"""Episode detail: beats with state, attempts, backend, worker, duration and last error; the
highlighted beat's keyframe drawn in the terminal; retry, cancel, copy a link."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Static

from storyworld.tui import format as fmt
from storyworld.tui import images
from storyworld.tui.data import Snapshot
from storyworld.tui.keyframe import half_blocks
from storyworld.tui.screens import LiveScreen, bindings
from storyworld.tui.widgets import KeyedTable, Row, Tones, set_content

__all__ = ["EpisodeScreen", "header_text"]

BEAT_COLUMNS = [
    ("#", "index", 3),
    ("state", "state", 11),
    ("tries", "attempts", 5),
    ("backend", "backend", 11),
    ("worker", "worker", 14),
    ("render", "duration", 8),
    ("last error", "error", 30),
]


def cost_text(costs: dict[str, Any] | None) -> str:
    """`GPU 41.5 s · $0.01 · ETA 1m 20s for 2 beats (measured)`."""
    if not costs:
        return ""
    parts = [f"GPU {fmt.duration(costs['gpu_seconds'])}"]
    parts.append(f"${costs['cost']:.2f}" if costs.get("cost") is not None
                 else "cost: set GPU_COST_PER_HOUR")  # fmt: skip
    left = costs.get("beats_left") or 0
    if left and costs.get("eta_s") is not None:
        parts.append(f"ETA {fmt.duration(costs['eta_s'])} for {left} beat(s) (measured p50)")
    elif left:
        parts.append(f"ETA – ({left} beat(s) left; no render measured on its backend yet)")
    return " · ".join(parts)


def header_text(
    d: dict[str, Any], now: float, tones: Tones, costs: dict[str, Any] | None = None
) -> Text:
    label, tone = fmt.state_label(d["state"], fmt.EPISODE_STATES)
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(d["title"], style="bold")
    t.append(f"  {d['id']}  ", style=tones.muted)
    t.append(label, style=tones[tone])
    total = d["beats_total"] or 0
    frac = d["beats_done"] / total if total else 0.0
    t.append(f"\n{fmt.bar(frac, 20)} {d['beats_done']}/{total} beats", style=tones.accent)
    if d.get("beats_failed"):
        t.append(f"  {d['beats_failed']} failed ✗", style=tones.error)
    start = d.get("started_at")
    elapsed = fmt.duration((d.get("finished_at") or now) - start) if start else "–"
    t.append(f"   elapsed {elapsed}   {d['backend']} {d['size']} @ {d['fps']} fps")
    if costs:
        t.append(f"\n{cost_text(costs)}", style=tones.muted)
    if d.get("error"):
        t.append(f"\n✗ {d['error']}", style=tones.error)
    if d.get("output_key"):
        t.append(f"\nepisode: {d['output_key']}", style=tones.muted)
    return t


class EpisodeScreen(LiveScreen):
    SCREEN_ID = "episode"
    BINDINGS = bindings("episode")

    def __init__(self, episode_id: str) -> None:
        super().__init__()
        self.episode_id = episode_id
        self.detail: dict[str, Any] | None = None
        self._keyframe_key: str | None = None
        self.costs: dict[str, Any] | None = None
        self._costs_for: tuple[str, int, str] | None = None
        self._keyframes: dict[str, Text] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text(f"Episode {self.episode_id}: loading…"), id="episode-header")
        with Horizontal(id="episode-body"):
            yield KeyedTable(BEAT_COLUMNS, id="beats", classes="panel")
            with Vertical(id="beat-side", classes="panel"):
                yield Static(id="keyframe")
                yield Static(id="beat-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#beats").border_title = "Beats"
        self.query_one("#beat-side").border_title = "Keyframe"
        self.query_one("#beats", KeyedTable).focus()
        self.console.source.watch_episode(self.episode_id)

    def on_unmount(self) -> None:
        self.console.source.watch_episode(None)

    # ------------------------------------------------------------------ rendering
    def show(self, snap: Snapshot, now: float) -> None:
        d = snap.episode
        if not d or not (d["id"] == self.episode_id or d["id"].startswith(self.episode_id)):
            return
        self.episode_id = d["id"]
        self.detail = d
        tones = self.console.tones
        set_content(
            self.query_one("#episode-header", Static),
            header_text(d, now, tones, self.costs),
            layout=True,
        )
        self._update_costs(d, snap)
        rows = []
        for b in d["beats"]:
            label, tone = fmt.state_label(b["state"], fmt.BEAT_STATES)
            error = b["error"].splitlines()[0][:200] if b["error"] else ""
            rows.append(
                Row(
                    str(b["index"]),
                    (
                        (str(b["index"] + 1), "plain"),
                        (label, tone),
                        (str(b["attempts"]), "plain"),
                        (b["backend"], "muted"),
                        (b["worker"] or "–", "muted"),
                        (fmt.duration(b["render_s"]) if b["render_s"] else "–", "plain"),
                        (error, "error"),
                    ),
                )
            )
        self.query_one("#beats", KeyedTable).sync(rows, tones)
        self._show_beat()

    def _update_costs(self, d: dict[str, Any], snap: Snapshot) -> None:
        """GPU-seconds, cost and ETA: read again (from the database) when a beat moves."""
        key = (d["id"], d["beats_done"], d["state"])
        if key == self._costs_for:
            return
        self._costs_for = key
        workers = sum(1 for w in snap.workers if d["backend"] in w.backends.split(",")
                      and w.state not in ("gone", "stopped"))  # fmt: skip
        source = self.console.source

        def done(costs: dict[str, Any]) -> None:
            self.costs = costs
            if self.is_mounted and self.detail is not None:
                set_content(self.query_one("#episode-header", Static),
                            header_text(self.detail, self.console.clock(), self.console.tones,
                                        costs), layout=True)  # fmt: skip

        self.console.run_io("Read costs", lambda: source.episode_costs(d["id"], workers), done,
                            group="episode-costs", quiet=True)  # fmt: skip

    def _beat(self) -> dict[str, Any] | None:
        if not self.detail:
            return None
        key = self.query_one("#beats", KeyedTable).highlighted_key
        if key is None:
            return None
        return next((b for b in self.detail["beats"] if str(b["index"]) == key), None)

    def _keyframe_of(self, beat: dict[str, Any]) -> str | None:
        assert self.detail is not None
        if beat.get("keyframe"):  # keyframes first: the drawn (or approved) keyframe
            return str(beat["keyframe"])
        keys = [
            a["key"]
            for a in self.detail["artifacts"]
            if a["kind"] == "keyframe" and a["beat_id"] == beat["id"]
        ]
        return keys[-1] if keys else None

    def _show_beat(self) -> None:
        beat = self._beat()
        text = self.query_one("#beat-text", Static)
        if beat is None:
            set_content(text, "")
            return
        t = Text()
        t.append(f"Beat {beat['index'] + 1}", style="bold")
        t.append(f"  {beat['duration_s']:g} s")
        if beat["scene"]:
            t.append(f"  {beat['scene']}", style="italic")
        t.append(f"\n{beat['text']}")
        for c in beat["captions"]:
            t.append(f"\n“{c}”", style="italic")
        if beat.get("characters"):
            t.append(f"\ncharacters: {', '.join(beat['characters'])}")
        if isinstance(beat.get("score"), float):
            flag = "  ⚑ below CONSISTENCY_MIN" if beat.get("flagged") else ""
            t.append(f"\nkeyframe score {beat['score']:.3f}{flag}")
        if beat.get("reused_from"):
            t.append(f"\nreused from {beat['reused_from']}", style=self.console.tones.muted)
        if beat["clip_key"]:
            t.append(f"\n{beat['clip_key']}", style=self.console.tones.muted)
        if beat["error"]:
            t.append(f"\n✗ {beat['error']}", style=self.console.tones.error)
        set_content(text, t, layout=True)
        key = self._keyframe_of(beat)
        if key != self._keyframe_key:
            self._keyframe_key = key
            self._load_keyframe(key)

    def _load_keyframe(self, key: str | None) -> None:
        panel = self.query_one("#keyframe", Static)
        if key is None:
            panel.update(Text("no keyframe yet", style="dim"))
            return
        if key in self._keyframes:
            panel.update(self._keyframes[key])
            return
        panel.update(Text("loading keyframe…", style="dim"))
        width = max(16, (panel.size.width or 40) - 1)
        real = images.graphics()  # kitty / sixel terminals: the picture itself

        def fetch() -> Any:
            image = self.console.source.keyframe(key)
            if real is not None:
                return image
            return half_blocks(image, max_cells_w=min(width, 64), max_cells_h=12)

        def done(rendered: Any) -> None:
            if real is not None:
                self._show_real(real, rendered)
                return
            self._keyframes[key] = rendered
            if self._keyframe_key == key:
                panel.update(rendered)

        self.console.run_io("Keyframe preview", fetch, done, group="keyframe", quiet=True)

    def _show_real(self, widget_class: Any, image: Any) -> None:
        """Show `image` in textual-image's widget (mounted once, under the half blocks)."""
        panel = self.query_one("#keyframe", Static)
        found = self.query("#keyframe-image")
        if found:
            found.first().image = image
        else:
            self.query_one("#beat-side").mount(
                widget_class(image, id="keyframe-image"), after=panel
            )
        panel.update("")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_beat()

    # ------------------------------------------------------------------ actions
    def action_retry_beat(self) -> None:
        beat = self._beat()
        if beat is None:
            self.notify("No beat is highlighted", severity="warning", timeout=3)
            return
        self.console.retry(self.episode_id, beat["index"])

    def action_retry_failed(self) -> None:
        self.console.retry(self.episode_id, None)

    def action_cancel_episode(self) -> None:
        self.console.cancel(self.episode_id, self)

    def action_toggle_pause(self) -> None:
        self.console.toggle_pause()

    def action_copy_clip_link(self) -> None:
        beat = self._beat()
        if beat is None or not beat["clip_key"]:
            self.notify("This beat has no clip yet", severity="warning", timeout=3)
            return
        self.console.copy_link(beat["clip_key"])

    def action_open_keyframes(self) -> None:
        from storyworld.tui.keyframes import KeyframesScreen

        self.app.push_screen(KeyframesScreen(self.episode_id))

    def action_compare_attempts(self) -> None:
        beat = self._beat()
        if beat is None or not self.detail:
            self.notify("No beat is highlighted", severity="warning", timeout=3)
            return
        from storyworld.tui.attempts import AttemptsScreen

        self.app.push_screen(AttemptsScreen(self.detail, beat))

    def action_play_clip(self) -> None:
        beat = self._beat()
        if beat is None or not beat["clip_key"]:
            self.notify("This beat has no clip yet", severity="warning", timeout=3)
            return
        self.console.play(beat["clip_key"])

    def action_play_episode(self) -> None:
        if not self.detail or not self.detail.get("output_key"):
            self.notify("The episode is not composed yet", severity="warning", timeout=3)
            return
        self.console.play(self.detail["output_key"])

    def action_copy_episode_link(self) -> None:
        if not self.detail or not self.detail.get("output_key"):
            self.notify("The episode is not composed yet", severity="warning", timeout=3)
            return
        self.console.copy_link(self.detail["output_key"])
