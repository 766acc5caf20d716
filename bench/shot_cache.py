"""The shot cache on the local default: render a script with a cast, edit one beat, render
again; count the jobs each revision sent and time both renders.

    PYTHONPATH=. .venv/bin/python bench/shot_cache.py                 # 20 beats
    PYTHONPATH=. .venv/bin/python bench/shot_cache.py --beats 40 --json

Real processes: `storyworld render` (its engine and two local workers), the embedded
Redis and the local store in a fresh STORYWORLD_HOME. Every beat names a character with a
reference image, so every beat is rendered keyframes first (2 jobs a beat).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CAST = """\
[style]
look = "ink and watercolour"

[characters.Mara]
description = "an old keeper, grey braid"
references = ["mara.png"]
"""


def _script(beats: int, seconds: float, edited: int | None = None) -> str:
    lines = ["Title: Shot cache", "", "EXT. LIGHTHOUSE - NIGHT", ""]
    for i in range(beats):
        text = f"[{seconds:g}s] Mara checks the lamp, round {i + 1}."
        if i == edited:
            text = f"[{seconds:g}s] Mara trims the wick, round {i + 1}."
        lines += [text, ""]
    return "\n".join(lines)


def _render(env: dict[str, str], script: Path) -> tuple[float, str]:
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", "render", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if run.returncode != 0:
        raise SystemExit(run.stderr[-2000:])
    return time.perf_counter() - started, re.search(r"episode (\w+)", run.stderr).group(1)


def _jobs(env: dict[str, str], episode_id: str) -> tuple[int, int]:
    shown = subprocess.run(
        [sys.executable, "-m", "storyworld.cli", "--env-file", "", "episode", "show",
         episode_id, "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    detail = json.loads(shown.stdout)
    jobs = sum(len(b["jobs"]) for b in detail["beats"])
    reused = sum(1 for b in detail["beats"] if b["reused_from"])
    return jobs, reused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beats", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0, help="each beat's length")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sw-shot-cache-") as tmp:
        folder = Path(tmp)
        Image.new("RGB", (32, 32), (200, 40, 40)).save(folder / "mara.png")
        (folder / "keeper.cast.toml").write_text(CAST, encoding="utf-8")
        script = folder / "keeper.fountain"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "S3_"))}
        for name in ("DATABASE_URL", "STORAGE_URL", "DEFAULT_BACKEND"):
            env.pop(name, None)
        env.update(
            {
                "STORYWORLD_HOME": str(folder / "home"),
                "DEFAULT_WIDTH": "128",
                "DEFAULT_HEIGHT": "72",
                "DEFAULT_FPS": "8",
                "PYTHONPATH": str(ROOT),
            }
        )
        script.write_text(_script(args.beats, args.seconds), encoding="utf-8")
        first_s, first = _render(env, script)
        script.write_text(_script(args.beats, args.seconds, args.beats // 2), encoding="utf-8")
        second_s, second = _render(env, script)
        jobs_1, _ = _jobs(env, first)
        jobs_2, reused = _jobs(env, second)
    figures = {
        "beats": args.beats,
        "first_render_s": round(first_s, 1),
        "first_jobs": jobs_1,
        "edited_render_s": round(second_s, 1),
        "edited_jobs": jobs_2,
        "reused_beats": reused,
    }
    if args.json:
        print(json.dumps(figures))
    print(
        "| beats | first render | jobs | one beat edited, rendered again | jobs | beats reused |\n"
        "| --- | --- | --- | --- | --- | --- |\n"
        f"| {args.beats} | {figures['first_render_s']} s | {jobs_1} "
        f"| {figures['edited_render_s']} s | {jobs_2} | {reused} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
