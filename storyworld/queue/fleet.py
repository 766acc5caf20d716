"""What the fleet waits on and who serves it: the autoscaling signal.

Waiting jobs are counted per wake list (`…:wake:{backend}` and `…:wake:{backend}@{GB}`),
the same lists idle workers block on and KEDA's Redis list scaler reads, so the numbers
here, `queue stats --json`, the metrics endpoint and a scaler always agree. Live workers
come from their heartbeats (backends, GPU memory).

Cost: one script for every wake list's length (one command however many lists), one
ZRANGE of the worker registry and one HMGET per known worker, in two round trips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storyworld.protocol import KNOWN_BACKENDS
from storyworld.queue.keys import VRAM_CLASSES, Keys

__all__ = ["BackendLoad", "FleetStats", "fleet_stats", "vram_class_of", "wake_lengths"]

# KEYS: the wake lists. Returns their lengths, in order.
_LLEN_MANY = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('LLEN', key) end
return out
"""

_HB_FIELDS = ("backends", "gpu", "state", "job")


def vram_class_of(vram_gb: float) -> int:
    """The largest memory class (GB) a worker with `vram_gb` of GPU memory serves; 0 for
    a worker without a GPU (or a smaller one than every class)."""
    fits = [c for c in VRAM_CLASSES if c <= vram_gb]
    return fits[-1] if fits else 0


@dataclass
class BackendLoad:
    """Waiting jobs and live workers of one backend (or one backend and memory class)."""

    waiting: int = 0
    workers: int = 0
    busy: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"waiting": self.waiting, "workers": self.workers, "busy": self.busy}


@dataclass
class FleetStats:
    """Per backend and per GPU memory class: jobs waiting and live workers that serve them.

    `by_vram_class["24"]` counts jobs that need a card of at least 24 GB and live workers
    with at least 24 GB; class `"0"` is jobs with no memory need and every live worker.
    """

    #: Workers with a live heartbeat.
    workers: int = 0
    by_backend: dict[str, BackendLoad] = field(default_factory=dict)
    by_vram_class: dict[str, BackendLoad] = field(default_factory=dict)
    #: Length of every wake list that has jobs, by suffix (`svd`, `svd@24`).
    wake_lists: dict[str, int] = field(default_factory=dict)
    #: Per backend, the classes that have waiting jobs (and "0"), with the live workers of
    #: that backend able to take them, e.g. `{"svd": {"0": …, "24": …}}`.
    by_backend_vram: dict[str, dict[str, BackendLoad]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "by_backend": {k: v.as_dict() for k, v in sorted(self.by_backend.items())},
            "by_vram_class": {
                k: v.as_dict() for k, v in sorted(self.by_vram_class.items(), key=_num)
            },
            "by_backend_vram": {
                b: {k: v.as_dict() for k, v in sorted(d.items(), key=_num)}
                for b, d in sorted(self.by_backend_vram.items())
            },
            "wake_lists": dict(sorted(self.wake_lists.items())),
        }


def _num(item: tuple[str, Any]) -> int:
    return int(item[0])


def _s(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _worker_vram(gpu_field: str) -> float:
    try:
        gpu = json.loads(gpu_field) if gpu_field else None
        return float(gpu["mem_total_mb"]) / 1024 if gpu else 0.0
    except (ValueError, KeyError, TypeError):
        return 0.0


def wake_lengths(redis_client: Any, keys: Keys, suffixes: list[str]) -> list[int]:
    """`LLEN` of the wake lists `suffixes` (`svd`, `svd@24`), in one command."""
    if not suffixes:
        return []
    reply = redis_client.eval(_LLEN_MANY, len(suffixes), *(keys.wake(s) for s in suffixes))
    return [int(n) for n in reply]


def fleet_stats(redis_client: Any, keys: Keys, backends: list[str] | None = None) -> FleetStats:
    """Count waiting jobs per wake list and live workers per backend and memory class.

    `backends` defaults to every known backend plus any a live worker advertises (the
    workers are read first for that reason)."""
    r = redis_client
    ids = [_s(w) for w in r.zrange(keys.workers, 0, -1)]
    beats: list[list[Any]] = []
    if ids:
        with r.pipeline(transaction=False) as p:
            for w in ids:
                p.hmget(keys.worker(w), *_HB_FIELDS)
            beats = p.execute()
    live = []
    for row in beats:
        values = [_s(v) for v in row]
        if not any(values):
            continue  # heartbeat expired: the worker is gone
        names = [b for b in values[0].split(",") if b]
        live.append((names, vram_class_of(_worker_vram(values[1])), values[3] != ""))
    names = sorted(set(backends or KNOWN_BACKENDS) | {b for n, _, _ in live for b in n})
    suffixes = [s for b in names for s in [b, *(f"{b}@{c}" for c in VRAM_CLASSES)]]
    lengths = wake_lengths(r, keys, suffixes)
    out = FleetStats(workers=len(live))
    for b in names:
        out.by_backend[b] = BackendLoad()
        out.by_backend_vram[b] = {}
    for c in (0, *VRAM_CLASSES):
        out.by_vram_class[str(c)] = BackendLoad()
    for suffix, n in zip(suffixes, lengths, strict=True):
        n = int(n)
        backend, _, cls = suffix.partition("@")
        cls = cls or "0"
        out.by_backend[backend].waiting += n
        out.by_vram_class[cls].waiting += n
        if n:
            out.wake_lists[suffix] = n
            out.by_backend_vram[backend].setdefault(cls, BackendLoad()).waiting += n
    for served, cls_gb, busy in live:
        for c in (0, *VRAM_CLASSES):
            if c <= cls_gb:
                load = out.by_vram_class[str(c)]
                load.workers += 1
                load.busy += int(busy)
        for b in served:
            load = out.by_backend[b]
            load.workers += 1
            load.busy += int(busy)
    for b in names:
        cells = out.by_backend_vram[b]
        cells.setdefault("0", BackendLoad())
        for cls, cell in cells.items():
            able = [busy for served, gb, busy in live if b in served and gb >= int(cls)]
            cell.workers, cell.busy = len(able), sum(able)
    return out
