"""On a worker: the GPU through NVML, torch and CUDA, each configured model loadable
offline, free disk for weights, and the Veo key when `veo` is enabled."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import httpx

from storyworld.config import Settings
from storyworld.doctor.report import Check, Status
from storyworld.worker.backends import KNOWN_BACKENDS, available_backends, backend_class
from storyworld.worker.backends.diffusion import hf_offline
from storyworld.worker.gpu import gpu_status

__all__ = ["check_worker", "enabled_backends"]

MIN_FREE_GB = 15.0
_MODEL_SETTINGS = {
    "animatediff": ("animatediff_base_model", "animatediff_motion_adapter"),
    "svd": ("svd_model",),
    "wan": ("wan_model",),
    "ltx": ("ltx_model",),
    "keyframe": ("keyframe_model",),
}


def enabled_backends(settings: Settings) -> tuple[list[str], bool]:
    """The backends this worker offers and whether they were named (WORKER_BACKENDS)."""
    named = [b.strip() for b in settings.worker_backends.split(",") if b.strip()]
    if named:
        return named, True
    default = [b for b in KNOWN_BACKENDS if b != "veo" or settings.gemini_api_key]
    return default, False


def _driver() -> str:
    try:
        import pynvml

        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:
        return "unknown"


def _gpu(needs_gpu: list[str]) -> tuple[list[Check], bool]:
    gpu = gpu_status()
    if gpu is None:
        if needs_gpu:
            return [
                Check(
                    "worker.gpu",
                    Status.FAIL,
                    f"no GPU visible through NVML, and {', '.join(needs_gpu)} need one",
                    fix="run on a GPU pod; in a container pass the GPUs (--gpus all / the NVIDIA "
                    "runtime); `nvidia-smi` must list the card",
                )
            ], False
        return [
            Check(
                "worker.gpu",
                Status.OK,
                "no GPU (a CPU worker: no GPU backend named)",
                data={"gpu": None},
            )
        ], False
    summary = (
        f"{gpu['name']}, {gpu['mem_total_mb'] / 1024:.1f} GiB "
        f"({gpu['mem_used_mb'] / 1024:.1f} used), driver {_driver()}"
    )
    return [Check("worker.gpu", Status.OK, summary, data={"gpu": gpu, "driver": _driver()})], True


def _torch(has_gpu: bool, wanted_gpu: bool) -> Check:
    if importlib.util.find_spec("torch") is None:
        status = Status.FAIL if wanted_gpu else Status.OK
        return Check(
            "worker.torch", status, "torch is not installed", fix="pip install 'storyworld[gpu]'"
        )
    import torch

    cuda = torch.cuda.is_available()
    data = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": cuda}
    if cuda:
        return Check(
            "worker.torch",
            Status.OK,
            f"torch {torch.__version__} sees CUDA {torch.version.cuda} "
            f"({torch.cuda.device_count()} device(s))",
            data=data,
        )
    if has_gpu:
        return Check(
            "worker.torch",
            Status.FAIL,
            f"NVML sees a GPU but torch {torch.__version__} does not"
            + (" (a CPU build)" if not torch.version.cuda else ""),
            fix="install a CUDA build of torch matching the driver "
            "(pip install torch --index-url https://download.pytorch.org/whl/cu124)",
            data=data,
        )
    return Check(
        "worker.torch",
        Status.FAIL if wanted_gpu else Status.OK,
        f"torch {torch.__version__} without CUDA (no GPU here)",
        data=data,
        fix="run on a GPU pod",
    )


def _models(settings: Settings, backends: list[str], named: bool) -> list[Check]:
    out = []
    status = available_backends(settings, [b for b in backends if b in KNOWN_BACKENDS])
    for name, why in status.items():
        if name in ("animatic", "veo"):
            continue
        models = ", ".join(getattr(settings, f, "?") for f in _MODEL_SETTINGS.get(name, ()))
        if why is None:
            out.append(
                Check(
                    f"worker.models.{name}",
                    Status.OK,
                    f"{name}: {models} present and loadable" + (" offline" if hf_offline() else ""),
                )
            )
            continue
        out.append(
            Check(
                f"worker.models.{name}",
                Status.FAIL if named else Status.WARN,
                f"{name} cannot run here: {why}" + ("" if named else " (not offered)"),
                fix="put the weights on the volume (see deploy/README.md for the layout) and "
                "point the setting at the folder, or fill the Hugging Face cache (HF_HOME) "
                "before starting with HF_HUB_OFFLINE=1",
            )
        )
    unknown = [b for b in backends if b not in KNOWN_BACKENDS]
    if unknown:
        out.append(
            Check(
                "worker.backends",
                Status.FAIL,
                f"WORKER_BACKENDS names unknown backends: {', '.join(unknown)}",
                fix=f"use some of {', '.join(KNOWN_BACKENDS)}",
            )
        )
    if any(b in _MODEL_SETTINGS for b in backends):
        if hf_offline():
            out.append(
                Check("worker.offline", Status.OK, "HF_HUB_OFFLINE=1: no download at run time")
            )
        else:
            out.append(
                Check(
                    "worker.offline",
                    Status.WARN,
                    "HF_HUB_OFFLINE is not set: a missing model is downloaded at the first job",
                    fix="set HF_HUB_OFFLINE=1 once the weights are on the volume",
                )
            )
    return out


def _weights_dir(settings: Settings) -> Path:
    for name in ("HF_HUB_CACHE", "HF_HOME"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    for fields in _MODEL_SETTINGS.values():
        p = Path(getattr(settings, fields[0], "")).expanduser()
        if str(p) not in ("", ".") and p.is_dir():
            return p.parent
    return Path("~/.cache/huggingface").expanduser()


def _disk(settings: Settings, gpu_backends: bool) -> Check:
    d = _weights_dir(settings)
    probe = d
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 2**30
    data = {"path": str(d), "free_gb": round(free, 1)}
    if gpu_backends and free < MIN_FREE_GB:
        return Check(
            "worker.disk",
            Status.WARN,
            f"{free:.1f} GiB free at {d} (weights want {MIN_FREE_GB:g} GiB or more)",
            fix="mount a bigger volume for the weights",
            data=data,
        )
    return Check("worker.disk", Status.OK, f"{free:.1f} GiB free at {d}", data=data)


def _veo(settings: Settings) -> Check:
    if not settings.gemini_api_key:
        return Check(
            "worker.veo",
            Status.FAIL,
            "veo is enabled but GEMINI_API_KEY is not set",
            fix="set GEMINI_API_KEY (from Google AI Studio)",
        )
    base = settings.veo_api_base.rstrip("/")
    url = f"{base}/models/{settings.veo_model}"
    try:
        resp = httpx.get(
            url, headers={"x-goog-api-key": settings.gemini_api_key.get()}, timeout=15.0
        )
    except httpx.HTTPError as e:
        return Check(
            "worker.veo",
            Status.FAIL,
            f"cannot reach VEO_API_BASE {base} ({type(e).__name__})",
            fix="check VEO_API_BASE and the pod's network",
        )
    if resp.status_code == 200:
        return Check(
            "worker.veo", Status.OK, f"{base} accepts GEMINI_API_KEY for {settings.veo_model}"
        )
    if resp.status_code in (400, 401, 403):
        return Check(
            "worker.veo",
            Status.FAIL,
            f"{base} refused GEMINI_API_KEY (HTTP {resp.status_code})",
            fix="copy the key again from Google AI Studio; check that the Gemini API "
            "is enabled for its project",
        )
    if resp.status_code == 404:
        return Check(
            "worker.veo",
            Status.FAIL,
            f"{base} does not know VEO_MODEL {settings.veo_model!r}",
            fix="set VEO_MODEL to a current model (e.g. veo-3.0-generate-001)",
        )
    return Check(
        "worker.veo",
        Status.WARN,
        f"{base} answered HTTP {resp.status_code}",
        fix="try again later; check the provider's status page",
    )


def check_worker(settings: Settings) -> list[Check]:
    backends, named = enabled_backends(settings)
    needs_gpu = []
    for b in backends:
        try:
            if named and backend_class(b).needs_gpu:
                needs_gpu.append(b)
        except Exception:
            continue
    out, has_gpu = _gpu(needs_gpu)
    gpu_backends = any(b in _MODEL_SETTINGS for b in backends)
    if gpu_backends or has_gpu:
        out.append(_torch(has_gpu, bool(needs_gpu)))
    out += _models(settings, backends, named)
    out.append(_disk(settings, gpu_backends and (named or has_gpu)))
    if "veo" in backends:
        out.append(_veo(settings))
    return out
