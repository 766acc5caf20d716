"""A feature-length screenplay on the local default: wall time and the peak memory (RSS)
of every process (the render command with its engine, the embedded Redis server, each
local worker).

    PYTHONPATH=. .venv/bin/python bench/feature_bench.py               # ~900 beats
    PYTHONPATH=. .venv/bin/python bench/feature_bench.py --beats 40    # a quick look

It writes the screenplay (bench/feature_script.py) into a fresh STORYWORLD_HOME, runs
`storyworld render` with its default two local workers, samples the process tree every
half second, and prints a Markdown table (and `--json` a JSON line) with the figures:
time to plan, to render and compose, the episode's length, loudness and true peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from feature_script import feature_screenplay

ROOT = Path(__file__).resolve().parent.parent


def _name(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if "worker" in cmd:
        return "worker"
    if "valkey" in cmd or "redis" in cmd:
        return "embedded Redis (valkey)"
    if " render " in f" {cmd} ":
        return "render (CLI + engine + composer)"
    return cmd[:60]


def _uses(p: psutil.Process, home: str) -> bool:
    try:
        return home in " ".join(p.cmdline()) or p.cwd().startswith(home)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beats", type=int, default=900)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    text = feature_screenplay(args.beats)
    with tempfile.TemporaryDirectory(prefix="storyworld-feature-") as home:
        script = Path(home) / "feature.fountain"
        script.write_text(text)
        from storyworld.engine.planner import plan_file

        t0 = time.perf_counter()
        plan = plan_file(script)
        plan_s = time.perf_counter() - t0
        env = {**os.environ, "STORYWORLD_HOME": home, "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        music = _music(Path(home) / "bed.wav")
        cmd = [sys.executable, "-m", "storyworld.cli", "--env-file", "", "render", str(script)]
        cmd += ["--music", str(music)]
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home
        )
        peaks: dict[int, tuple[str, int]] = {}
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            # The embedded server is started detached: found by the data directory it uses.
            if not any("valkey" in _name(p) for p in tree):
                tree += [p for p in psutil.process_iter() if p.pid != proc.pid and _uses(p, home)]
            for p in tree:
                try:
                    rss = p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                name, best = peaks.get(p.pid, (_name(p), 0))
                peaks[p.pid] = (name, max(best, rss))
            time.sleep(0.5)
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(err[-3000:], file=sys.stderr)
            return proc.returncode
        episode = Path(out.strip().splitlines()[-1].removeprefix("file://"))
        from storyworld.media import probe

        info = probe(episode)
        mix = _mix_figures(home)
    by_kind: dict[str, int] = {}
    for name, rss in peaks.values():
        by_kind[name] = max(by_kind.get(name, 0), rss)
    figures = {
        "beats": len(plan.beats),
        "script_kb": round(len(text.encode()) / 1024, 1),
        "plan_s": round(plan_s, 3),
        "render_s": round(wall, 1),
        "episode_min": round(info.duration_s / 60, 2),
        "peak_rss_mb": {k: round(v / 2**20) for k, v in sorted(by_kind.items())},
        "cpus": os.cpu_count(),
        **mix,
    }
    if args.json:
        print(json.dumps(figures))
    print("| beats | script | plan | beats rendered | compose | whole command | episode |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {figures['beats']} | {figures['script_kb']} KB | {figures['plan_s']} s | "
        f"{mix.get('beats_s')} s | {mix.get('compose_s')} s | {wall / 60:.1f} min | "
        f"{figures['episode_min']} min |"
    )
    print()
    print(
        f"Loudness {mix.get('lufs')} LUFS, true peak {mix.get('true_peak_dbtp')} dBTP, "
        f"{mix.get('cues')} cues, {mix.get('beats_grown')} beats grew to fit their lines; "
        f"video {mix.get('video_s')} s, audio {mix.get('audio_s')} s."
    )
    print()
    print("| process | peak RSS |")
    print("| --- | --- |")
    for k, v in figures["peak_rss_mb"].items():
        print(f"| {k} | {v} MB |")
    return 0


def _mix_figures(home: str) -> dict[str, object]:
    """The composer's measurements and how long each stage took, from the local database."""
    import sqlite3

    db = Path(home) / "local.db"
    with sqlite3.connect(db) as conn:
        query = "SELECT id, options FROM episodes ORDER BY created_at DESC"
        episode_id, options = conn.execute(query).fetchone()
        at = dict(
            conn.execute(
                "SELECT to_state, MAX(at) FROM transitions WHERE entity_id = ? GROUP BY to_state",
                (episode_id,),
            ).fetchall()
        )
        grew = conn.execute(
            "SELECT COUNT(*) FROM transitions WHERE reason LIKE '%to fit its dialogue%'"
        ).fetchone()[0]
    mix = (json.loads(options) if isinstance(options, str) else options or {}).get("mix", {})
    out = {k: mix.get(k) for k in ("lufs", "true_peak_dbtp", "video_s", "audio_s", "cues")}
    if "composing" in at and "rendering" in at and "completed" in at:
        out["beats_s"] = round(at["composing"] - at["rendering"], 1)
        out["compose_s"] = round(at["completed"] - at["composing"], 1)
    out["beats_grown"] = grew
    return out


def _music(path: Path) -> Path:
    """A 20 s chord as the music bed (WAV), so the mix ducks it under every line."""
    import wave

    import numpy as np

    t = np.arange(20 * 22050) / 22050
    x = sum(np.sin(2 * np.pi * f * t) for f in (196, 247, 294)) / 3 * 0.4
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


if __name__ == "__main__":
    raise SystemExit(main())
