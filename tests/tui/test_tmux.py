"""The real `storyworld-tui` in a real terminal (tmux): on the local default (embedded
server, two local animatic workers), render the example episode from the keyboard, quit,
and check that the process exited 0 and stopped the embedded server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from storyworld.queue.embedded import EmbeddedRedis

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux"),
]

CONSOLE = Path(sys.executable).parent / "storyworld-tui"


class Tmux:
    """A private tmux server (its own socket name), one session."""

    def __init__(self) -> None:
        self.name = f"sw-{uuid.uuid4().hex[:8]}"

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, timeout=20
        )
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "console")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "console", *keys)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux()
    yield t
    t.kill()


def test_render_the_example_from_the_keyboard_and_quit(tmux: Tmux) -> None:
    assert CONSOLE.exists(), f"{CONSOLE} is not installed (pip install -e .)"
    work = Path(tempfile.mkdtemp(prefix="sw-tmux-"))
    home = work / "home"
    rc_file = work / "rc"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS", "JOB_", "RESULT_", "S3_", "DATABASE", "STORAGE", "LOCAL"))
    }
    env.update(
        {
            "STORYWORLD_HOME": str(home),
            "TERM": "xterm-256color",
            # Small frames: the test is about the console, not the renderer.
            "DEFAULT_WIDTH": "128",
            "DEFAULT_HEIGHT": "72",
            "DEFAULT_FPS": "8",
        }
    )
    command = f"cd {work} && {CONSOLE}; echo $? > {rc_file}"
    subprocess.run(
        ["tmux", "-L", tmux.name, "new-session", "-d", "-s", "console", "-x", "160", "-y", "48",
         "sh", "-c", command],
        env=env, check=True, timeout=20,
    )  # fmt: skip
    try:
        tmux.wait_for(
            lambda s: "Workers" in s and "this console dispatches" in s, 60, "the dashboard"
        )
        tmux.wait_for(lambda s: s.count("○ idle") >= 2, 60, "two idle local workers")
        tmux.keys("e")  # new episode with the example loaded
        tmux.wait_for(lambda s: "✓ 3 beats" in s, 20, "the plan preview")
        tmux.keys("C-s")  # submit
        tmux.wait_for(lambda s: "Beats" in s and "Keyframe" in s, 20, "episode detail")
        tmux.wait_for(lambda s: "✓ completed" in s, 180, "the episode completed")
        tmux.keys("Escape")
        tmux.wait_for(lambda s: "✓ completed" in s and "Uploads" in s, 20, "dashboard")
        tmux.keys("q")
        deadline = time.monotonic() + 60
        while not rc_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rc_file.exists(), f"the console did not exit; screen:\n{tmux.screen()}"
        assert rc_file.read_text().strip() == "0"
        # The embedded server stopped with the last program that used it.
        server = EmbeddedRedis(home)
        assert not server._ping()
        with pytest.raises((redis.ConnectionError, FileNotFoundError, OSError)):
            redis.Redis(unix_socket_path=str(server.socket), socket_timeout=1).ping()
        assert list((home / "artifacts").rglob("episode.mp4")), "no episode was composed"
    finally:
        shutil.rmtree(work, ignore_errors=True)


STORYWORLD = Path(sys.executable).parent / "storyworld"


def test_palette_opens_dead_letters_and_jobs_then_q_exits(tmux: Tmux) -> None:
    """Dashboard, ctrl+p, "dead", enter: the dead letters; the palette again: the jobs screen,
    listing the job ids of a waiting episode (no workers, so its jobs wait); q exits 0."""
    work = Path(tempfile.mkdtemp(prefix="sw-tmux-"))
    home = work / "home"
    rc_file = work / "rc"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS", "JOB_", "RESULT_", "S3_", "DATABASE", "STORAGE", "LOCAL"))
    }
    env.update({"STORYWORLD_HOME": str(home), "TERM": "xterm-256color"})
    script = work / "two.txt"
    script.write_text("# Waiting\n\nThe lamp is lit.\n\nThe ship turns.\n")
    made = subprocess.run(
        [str(STORYWORLD), "episode", "create", str(script), "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    episode = json.loads(made.stdout)["id"]
    command = f"cd {work} && {CONSOLE} --workers 0; echo $? > {rc_file}"
    subprocess.run(
        ["tmux", "-L", tmux.name, "new-session", "-d", "-s", "console", "-x", "160", "-y", "48",
         "sh", "-c", command],
        env=env, check=True, timeout=20,
    )  # fmt: skip
    try:
        tmux.wait_for(lambda s: "Workers" in s and "this console dispatches" in s, 60, "dashboard")
        tmux.keys("C-p")
        tmux.wait_for(lambda s: "Search for commands" in s, 20, "the palette")
        tmux.keys("d", "e", "a", "d")
        tmux.wait_for(lambda s: "Dead letters" in s and "Jobs that could not run" in s, 20, "hit")
        tmux.keys("Enter")
        tmux.wait_for(lambda s: "dead letter(s)" in s, 20, "the dead letters screen")
        tmux.keys("C-p")
        tmux.wait_for(lambda s: "Search for commands" in s, 20, "the palette again")
        tmux.keys("j", "o", "b", "s")
        tmux.wait_for(lambda s: "Every job by state" in s, 20, "the jobs command")
        tmux.keys("Enter")
        screen = tmux.wait_for(
            lambda s: f"{episode}-b000-a1" in s and f"{episode}-b001-a1" in s and "waiting" in s,
            30,
            "the waiting episode's job ids on the jobs screen",
        )
        assert "2 job(s)" in screen
        tmux.keys("q")
        deadline = time.monotonic() + 60
        while not rc_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rc_file.exists(), f"the console did not exit; screen:\n{tmux.screen()}"
        assert rc_file.read_text().strip() == "0"
    finally:
        shutil.rmtree(work, ignore_errors=True)
