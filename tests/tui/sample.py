"""Fixed data and a frozen clock for snapshot tests (no Redis, no database)."""

from __future__ import annotations

import json
from typing import Any

from PIL import Image

from storyworld.engine.planner import ScriptPlan, plan_script
from storyworld.tui.app import ConsoleApp
from storyworld.tui.data import (
    CostView,
    DeadLetterView,
    EngineView,
    EpisodeView,
    HealthView,
    QueueView,
    Snapshot,
    Thresholds,
    UploadView,
    WorkerView,
)
from storyworld.tui.source import FixedSource

from .conftest import EXAMPLE

NOW = 1_700_000_000.0
#: What the sample apps asked the system's player to open.
OPENED: list[str] = []
EP = "3f9a1c2b7d4e"


def keyframe_image(w: int = 96, h: int = 54) -> Image.Image:
    """A deterministic picture: sky gradient, sea, a lighthouse."""
    img = Image.new("RGB", (w, h))
    px = img.load()
    assert px is not None
    for y in range(h):
        for x in range(w):
            if y < h * 0.6:
                px[x, y] = (20 + y * 2, 40 + y * 2, 90 + y * 3)
            else:
                px[x, y] = (10, 40 + (x * 3 + y) % 30, 70)
    for y in range(int(h * 0.2), int(h * 0.62)):
        for x in range(int(w * 0.62), int(w * 0.68)):
            px[x, y] = (230, 230, 220) if (y // 4) % 2 else (200, 40, 40)
    return img


def _job(i: int) -> str:
    return f"{EP}-b{i:03d}-a1"


def detail() -> dict[str, Any]:
    states = ["done", "done", "rendering", "failed", "queued", "pending"]
    beats = []
    artifacts = []
    for i, state in enumerate(states):
        attempts = {"failed": 3, "pending": 0}.get(state, 1)
        error = "CUDA out of memory (tried to allocate 2.1 GiB)" if state == "failed" else None
        clip = f"episodes/{EP}/beats/{i:03d}/attempt-1/clip.mp4" if state == "done" else None
        beats.append(
            {
                "index": i,
                "id": f"beat{i}",
                "state": state,
                "text": f"Beat {i + 1} of the storm: the beam sweeps the waves.",
                "scene": "EXT. LIGHTHOUSE - NIGHT" if i < 3 else "",
                "captions": ["MARA: Hold on."] if i == 1 else [],
                "duration_s": 4.0,
                "backend": "animatediff" if i % 2 else "animatic",
                "attempts": attempts,
                "error": error,
                "clip_key": clip,
                "worker": "runpod-a100-1" if state in ("done", "rendering", "failed") else None,
                "render_s": 41.5 + i if state == "done" else None,
                "jobs": [],
            }
        )
        if state == "done":
            artifacts.append(
                {
                    "kind": "keyframe",
                    "key": f"episodes/{EP}/beats/{i:03d}/attempt-1/keyframe.png",
                    "size": 20_000,
                    "sha256": "0" * 64,
                    "content_type": "image/png",
                    "beat_id": f"beat{i}",
                    "job_id": _job(i),
                }
            )
    return {
        "id": EP,
        "title": "The Last Lighthouse",
        "state": "rendering",
        "backend": "animatediff",
        "beats_done": 2,
        "beats_total": 6,
        "beats_failed": 1,
        "created_at": NOW - 400,
        "started_at": NOW - 385,
        "finished_at": None,
        "elapsed_s": 385.0,
        "error": None,
        "output_key": None,
        "size": "512x288",
        "fps": 12,
        "steps": 20,
        "seed": 7,
        "beats": beats,
        "artifacts": artifacts,
        "history": [],
        "script_format": "plain",
        "options": {},
    }


def snapshot() -> Snapshot:
    gpu = json.dumps({"name": "NVIDIA A100 80GB", "util": 97, "mem_used_mb": 30000,
                      "mem_total_mb": 81920})  # fmt: skip
    workers = (
        WorkerView("runpod-a100-1", "pod-7xk2", "A100 80GB 97% 29/80 GB", "animatediff,svd",
                   "busy", _job(2), EP, "2", "rendering", 0.62, NOW - 3, 41, 2, NOW - 7200),
        WorkerView("runpod-a100-2", "pod-9qz1", "A100 80GB 0% 1/80 GB", "animatediff,svd",
                   "idle", "", "", "", "", None, NOW - 40, 38, 0, NOW - 7100),
        WorkerView("runpod-l4-1", "pod-3mm8", "L4 55% 12/24 GB", "animatediff",
                   "busy", _job(4), EP, "4", "uploading", 1.0, NOW - 95, 12, 1, NOW - 3600),
        WorkerView("laptop-cpu-1", "laptop", "", "animatic", "idle", "", "", "", "", None,
                   NOW - 600, 7, 0, NOW - 900),
        WorkerView("runpod-h100-1", "pod-1aa0", "H100 0% 0/80 GB", "svd", "gone", "", "", "",
                   "", None, NOW - 4000, 3, 1, NOW - 9000),
    )  # fmt: skip
    assert gpu
    episodes = (
        EpisodeView(EP, "The Last Lighthouse", "rendering", 2, 6, 1, "animatediff", NOW - 400,
                    NOW - 385),
        EpisodeView("8c1d0e5f6a7b", "Harbour at dawn", "completed", 12, 12, 0, "animatic",
                    NOW - 5000, NOW - 4990, NOW - 4100),
        EpisodeView("a0b1c2d3e4f5", "The keeper's letter", "failed", 3, 8, 1, "svd",
                    NOW - 9000, NOW - 8990, NOW - 8000, "beat 4 failed: model gone"),
        EpisodeView("f6e5d4c3b2a1", "Fog", "cancelled", 1, 4, 0, "animatic", NOW - 9500,
                    NOW - 9490, NOW - 9400),
        EpisodeView("0123456789ab", "Night shift (draft)", "planned", 0, 40, 0, "animatediff",
                    NOW - 20),
    )  # fmt: skip
    uploads = tuple(
        UploadView(
            key=f"episodes/{EP}/beats/{i:03d}/attempt-1/{name}",
            size=size,
            bytes_per_s=size / 0.8,
            at=NOW - 30 * (6 - i) - (1 if name == "clip.mp4" else 0),
            episode_id=EP,
            beat_index=i,
            worker="runpod-a100-1",
        )
        for i in range(2)
        for name, size in (("clip.mp4", 1_834_000), ("keyframe.png", 212_000))
    )
    dead = (
        DeadLetterView(_job(3), "lease expired on each of 3 deliveries (last worker "
                       "runpod-l4-1)", json.dumps({"v": 1, "type": "job", "job_id": _job(3),
                       "episode_id": EP, "beat_index": 3, "backend": "animatediff",
                       "spec": {"prompt": "The beam sweeps the waves", "width": 512,
                                "height": 288, "fps": 12, "seconds": 4.0}}), NOW - 700,
                       "runpod-l4-1"),
        DeadLetterView("", "job message cannot be read: invalid JSON", "{not json", NOW - 1500,
                       "runpod-a100-2", "entry:5d41402abc4b2a76"),
    )  # fmt: skip
    return Snapshot(
        deployment="rediss://default:****@eu1-upstash.example:6379",
        queue=QueueView(
            waiting=3,
            in_flight=2,
            results_pending=0,
            dead=2,
            oldest_enqueued_at=NOW - 75,
            throughput_per_min=1.4,
            depth_history=(0, 0, 1, 3, 6, 6, 5, 4, 4, 3, 5, 8, 6, 4, 3, 3),
            known=True,
        ),
        workers=workers,
        episodes=episodes,
        uploads=tuple(sorted(uploads, key=lambda u: u.at, reverse=True)),
        engine=EngineView(role="leader", text="this console dispatches (engine-vm-4242)"),
        cost=CostView(
            system_per_min=5.2, budget_per_day=10_000, console_commands=61, console_per_hour=96.0
        ),
        health=HealthView(),
        thresholds=Thresholds(busy_stale_s=30, idle_stale_s=190, gone_s=330),
        engine_log=(
            "14:12:01 INFO engine-vm-4242 now dispatches",
            "14:12:02 INFO queued 6 job(s)",
            f"14:12:40 INFO job {_job(3)}: lease expired on runpod-l4-1; handed out again",
            f"14:13:20 ERROR job {_job(3)} dead-lettered: lease expired on each of 3 deliveries",
        ),
        worker_log_id="runpod-a100-1",
        worker_log=(
            "14:12:05 INFO job 3f9a1c2b7d4e-b000-a1: beat 0 of episode 3f9a1c2b7d4e",
            "14:12:47 INFO job 3f9a1c2b7d4e-b000-a1 rendered 48 frames in 41.5 s",
            "14:13:31 INFO job 3f9a1c2b7d4e-b002-a1: beat 2 of episode 3f9a1c2b7d4e",
        ),
        dead_letters=dead,
        episode=detail(),
    )


class StubActions:
    """Planning works; changes are refused (snapshot tests change nothing)."""

    def plan(self, text: str, fmt: str | None = None) -> ScriptPlan:
        return plan_script(text, fmt=fmt)

    def _refuse(self, *a: object, **kw: object) -> Any:
        raise RuntimeError("snapshot tests change nothing")

    create_episode = retry = cancel = requeue_dead = drop_dead = set_paused = _refuse
    bulk_jobs = command_worker = set_backend_paused = _refuse


def sample_app(snap: Snapshot | None = None) -> ConsoleApp:
    snap = snap or snapshot()
    keyframes = {a["key"]: keyframe_image() for a in detail()["artifacts"]}
    return ConsoleApp(
        FixedSource(snap, keyframes),
        StubActions(),  # type: ignore[arg-type]
        clock=lambda: NOW,
        example_script=EXAMPLE.read_text(),
        steady=True,
        opener=OPENED.append,  # never the desktop's player in a test
    )
