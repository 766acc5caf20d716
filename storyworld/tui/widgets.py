"""Widgets of the console: tables updated row by row by key, log panes with a filter,
the queue and cost panels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.color import Color, ColorParseError
from textual.widgets import DataTable, Log, Static

__all__ = ["KeyedTable", "LogPane", "Row", "Tones", "set_content", "set_if_changed", "tones_for"]


@dataclass(frozen=True)
class Tones:
    """Rich styles for the theme's tones (a status is never told by colour alone)."""

    success: Style
    warning: Style
    error: Style
    accent: Style
    muted: Style
    plain: Style

    def __getitem__(self, name: str) -> Style:
        return getattr(self, name, self.plain)

    def text(self, value: str, tone: str = "plain") -> Text:
        return Text(value, style=self[tone], no_wrap=True, overflow="ellipsis", end="")


def tones_for(app: App) -> Tones:
    """Styles from the app's theme variables ($text-success ...)."""
    variables = app.get_css_variables()

    def st(name: str, **kw: bool) -> Style:
        value = variables.get(name)
        if not value or app.no_color:
            return Style(**kw)
        try:
            return Style(color=Color.parse(value).rich_color, **kw)
        except ColorParseError:
            return Style(**kw)

    return Tones(
        success=st("text-success"),
        warning=st("text-warning", bold=True),
        error=st("text-error", bold=True),
        accent=st("text-primary"),
        muted=Style(dim=True),
        plain=Style(),
    )


def set_content(widget: Static, content: Text | str, *, layout: bool = False) -> bool:
    """Update a Static only if its content changed (an update refreshes the widget, and with
    `layout` the whole screen's layout). Returns True if it changed."""
    if widget.content == content:
        return False
    widget.update(content, layout=layout)
    return True


def set_if_changed(obj: object, name: str, value: object) -> None:
    """Assign a reactive (border title, display...) only when it changes."""
    if getattr(obj, name) != value:
        setattr(obj, name, value)


#: A cell as plain data: its text and the tone it is shown in.
Cell = tuple[str, str]


@dataclass(frozen=True)
class Row:
    """A table row: its key and its cells as (text, tone) pairs. Comparing these is cheap;
    Rich text is built only for the cells that changed."""

    key: str
    cells: tuple[Cell, ...]


class KeyedTable(DataTable[Text]):
    """A DataTable that is never cleared: `sync()` updates the cells that changed, adds new
    rows and removes gone ones by key, so the cursor stays on the operator's row."""

    def __init__(self, columns: Sequence[tuple[str, str, int]], **kw: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)  # type: ignore[arg-type]
        self._column_spec = columns
        self._columns = [key for _, key, _ in columns]
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._first: dict[str, Text] = {}  # the first cell's object, to sort rows by key
        self._order: list[str] = []

    def on_mount(self) -> None:
        # Fixed widths: columns do not jitter as values change, and no cell is ever drawn
        # at a provisional width (auto widths are settled later, on idle).
        for label, key, width in self._column_spec:
            self.add_column(label, key=key, width=width)

    def fit(self, widths: dict[str, int], padding: int | None = None) -> None:
        """Give columns new widths (by key; 0 hides a column's text) and, optionally, a
        new cell padding: for the terminal's size, without touching the rows."""
        changed = False
        for key, width in widths.items():
            column = self.columns.get(key)  # type: ignore[call-overload]
            if column is not None and column.width != width:
                column.width = width
                changed = True
        if padding is not None and self.cell_padding != padding:
            self.cell_padding = padding
            changed = True
        if changed:
            self._require_update_dimensions = True
            self.refresh()

    @property
    def highlighted_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def forget_styles(self) -> None:
        """Rebuild every cell at the next sync (the theme changed)."""
        self._shown = {k: tuple(("\0", "") for _ in v) for k, v in self._shown.items()}

    def sync(self, rows: Iterable[Row], tones: Tones) -> int:
        """Show `rows` in this order. Returns how many cells or rows changed."""
        rows = list(rows)
        wanted = [r.key for r in rows]
        wanted_set = set(wanted)
        keep = self.highlighted_key
        changes = 0
        for gone in [k for k in self._order if k not in wanted_set]:
            self.remove_row(gone)
            self._shown.pop(gone, None)
            self._first.pop(gone, None)
            changes += 1
        for r in rows:
            old = self._shown.get(r.key)
            if old is None:
                texts = [tones.text(*c) for c in r.cells]
                self.add_row(*texts, key=r.key)
                self._first[r.key] = texts[0]
                changes += 1
            elif old != r.cells:
                for i, (new, before) in enumerate(zip(r.cells, old, strict=True)):
                    if new != before:
                        text = tones.text(*new)
                        self.update_cell(r.key, self._columns[i], text)
                        if i == 0:
                            self._first[r.key] = text
                        changes += 1
            self._shown[r.key] = r.cells
        known = set(self._order)
        current = [k for k in self._order if k in wanted_set] + [
            k for k in wanted if k not in known
        ]
        if current != wanted:
            # Sort by the wanted position, looked up through the row's first cell.
            position = {id(self._first[k]): i for i, k in enumerate(wanted)}
            self.sort(self._columns[0], key=lambda cell: position.get(id(cell), 0))
        self._order = wanted
        if keep is not None and keep in wanted_set:
            index = self.get_row_index(keep)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)
        return changes


class LogPane(Log):
    """Log lines with a filter; new lines are appended, the view is rebuilt only when the
    filter changes or the source's lines no longer continue the shown ones."""

    def __init__(self, **kw: object) -> None:
        super().__init__(highlight=False, max_lines=2000, **kw)  # type: ignore[arg-type]
        self._all: list[str] = []
        self._filter = ""

    def _match(self, line: str) -> bool:
        return not self._filter or self._filter in line.lower()

    def set_lines(self, lines: Sequence[str]) -> None:
        lines = list(lines)
        if lines == self._all:
            return
        overlap = _overlap(self._all, lines)
        if overlap is None:
            self._all = lines
            self._redraw()
            return
        added = lines[overlap:]
        self._all = lines
        shown = [line for line in added if self._match(line)]
        if shown:
            self.write_lines(shown)

    def set_filter(self, text: str) -> None:
        text = text.strip().lower()
        if text != self._filter:
            self._filter = text
            self._redraw()

    @property
    def shown_lines(self) -> list[str]:
        return [line for line in self._all if self._match(line)]

    def _redraw(self) -> None:
        self.clear()
        shown = self.shown_lines
        if shown:
            self.write_lines(shown)


def _overlap(old: list[str], new: list[str]) -> int | None:
    """How many leading lines of `new` are already shown at the end of `old` (new lines
    start after them). None if `new` does not continue `old`."""
    if not old:
        return 0
    last = old[-1]
    for i in range(len(new) - 1, -1, -1):
        if new[i] == last and new[: i + 1] == old[len(old) - i - 1 :]:
            return i + 1
    return None
