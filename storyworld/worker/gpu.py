"""What an operator would read from `nvidia-smi`, for the heartbeat (NVML via nvidia-ml-py).
Absent on a CPU worker: every function returns None instead of failing."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_nvml: Any = None
_ready: bool | None = None


def _init() -> bool:
    global _nvml, _ready
    with _lock:
        if _ready is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml, _ready = pynvml, pynvml.nvmlDeviceGetCount() > 0
            except Exception:
                _ready = False
        return bool(_ready)


def gpu_status(index: int = 0) -> dict[str, Any] | None:
    """Name, utilisation (%) and memory (MiB) of GPU `index`, or None on a CPU worker."""
    if not _init():
        return None
    try:
        h = _nvml.nvmlDeviceGetHandleByIndex(index)
        name = _nvml.nvmlDeviceGetName(h)
        util = _nvml.nvmlDeviceGetUtilizationRates(h)
        mem = _nvml.nvmlDeviceGetMemoryInfo(h)
        return {
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "util": int(util.gpu),
            "mem_used_mb": int(mem.used // (1 << 20)),
            "mem_total_mb": int(mem.total // (1 << 20)),
        }
    except Exception:
        return None


def vram_gb() -> float:
    st = gpu_status()
    return round(st["mem_total_mb"] / 1024, 1) if st else 0.0
