"""The CLI's help, config and progress: every command and option explained (and listed in
the README), settings under their environment names, a rich progress bar on a terminal."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from storyworld.cli import ProgressView, build_parser

README = Path(__file__).parent.parent / "README.md"


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"`storyworld {' '.join((*path, name))}` has no help"
                yield from _walk(sub, (*path, name))


def test_every_command_and_option_has_help_and_is_in_the_readme() -> None:
    readme = README.read_text()
    for path, parser in _walk(build_parser()):
        if path and path[-1] == "worker":
            continue  # storyworld-worker's own parser
        if path:
            assert f"storyworld {' '.join(path)}" in readme, f"README lacks storyworld {path}"
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = action.option_strings[-1] if action.option_strings else action.dest
            assert action.help, f"`storyworld {' '.join(path)}` {name} has no help"
            if action.option_strings:
                assert action.option_strings[-1] in readme, f"README lacks {name} ({path})"


def test_config_shows_environment_names_and_the_database_in_use(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE"))}
    env.update({"STORYWORLD_HOME": str(tmp_path), "S3_SECRET_KEY": "very-secret-value"})
    out = subprocess.run([sys.executable, "-m", "storyworld.cli", "--env-file", "", "config"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert "LEASE_SECONDS" in shown and "lease_s" not in shown
    assert "very-secret-value" not in out.stdout
    assert shown["database (in use)"] == f"sqlite:///{tmp_path / 'local.db'}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_progress_is_a_rich_bar_on_a_terminal_and_lines_on_a_pipe() -> None:
    beats = [
        {
            "index": i,
            "state": s,
            "duration_s": 2.0,
            "error": "model gone" if s == "failed" else None,
        }
        for i, s in enumerate(["done", "rendering", "failed", "pending"])
    ]
    detail = {"id": "ep1", "title": "Lamp", "state": "rendering", "beats_done": 1,
              "beats_total": 4, "beats": beats}  # fmt: skip
    tty = Terminal()
    view = ProgressView(tty)
    view.show(detail, {1: 0.5})
    view.close()
    text = tty.getvalue()
    assert "Lamp [rendering]" in text and "1/4" in text and "25%" in text and "ETA" in text
    assert "beat 2" in text  # the beat in flight has its own bar
    assert "beat 3 failed: model gone" in text
    assert "━" in text  # drawn by rich
    pipe = io.StringIO()
    plain = ProgressView(pipe)
    plain.show(detail, {1: 0.5})
    assert "\x1b[" not in pipe.getvalue()
    assert "beat 2: rendering" in pipe.getvalue()


def test_retry_of_a_beat_that_does_not_exist_names_it(test_env: dict[str, str]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "storyworld.cli", "--env-file", "", *args],
                              env={**os.environ, **test_env}, capture_output=True, text=True,
                              timeout=120)  # fmt: skip

    script = Path(test_env["STORYWORLD_HOME"]).parent / "three.txt"
    script.write_text("# Three\n\n[1s] One.\n\n[1s] Two.\n\n[1s] Three.\n")
    created = json.loads(cli("episode", "create", str(script), "--json").stdout)
    out = cli("episode", "retry", created["id"], "--beat", "99")
    assert out.returncode == 2
    assert f"episode {created['id']} has beats 1 to 3; there is no beat 99" in out.stderr
