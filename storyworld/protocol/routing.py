"""Constants shared by Python and the Lua scripts: backends and GPU memory classes.

Lua receives these as ARGV (see `vram_classes_arg`), never as a copy of its own.
"""

from __future__ import annotations

__all__ = ["KNOWN_BACKENDS", "VRAM_CLASSES", "vram_classes_arg", "wake_suffix"]

#: Every backend a job may name. Workers advertise the subset they can run.
KNOWN_BACKENDS = ("animatic", "animatediff", "svd", "veo", "wan", "ltx", "keyframe")

#: GPU memory classes (GB) for jobs that need a big card.
VRAM_CLASSES = (8, 16, 24, 32, 48, 80, 141)


def vram_classes_arg() -> str:
    """The memory classes as one ARGV value for a Lua script: `8,16,24,...`."""
    return ",".join(str(c) for c in VRAM_CLASSES)


def wake_suffix(backend: str, min_vram_gb: float) -> str:
    """The wake list of a job: its backend, plus the smallest memory class that fits."""
    if min_vram_gb <= 0:
        return backend
    for c in VRAM_CLASSES:
        if min_vram_gb <= c:
            return f"{backend}@{c}"
    return f"{backend}@{VRAM_CLASSES[-1]}"
