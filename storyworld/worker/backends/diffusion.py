"""What the diffusion backends (AnimateDiff, SVD) share.

Device and dtype, finding a model offline (a local folder or the Hugging Face cache) with a
message that names the missing setting, one warm pipeline per process, progress and
cancellation through diffusers' `callback_on_step_end`, and out-of-memory handling.

This module imports torch and diffusers only inside functions, so `availability()` stays
cheap and a worker without them gets a reason instead of an ImportError.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from storyworld.protocol import RenderSpec
from storyworld.worker.backends.base import (
    BackendUnavailable,
    PermanentRenderError,
    RenderContext,
    TransientRenderError,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = [
    "OFFLOAD_MODES",
    "PIPELINES",
    "ModelMissing",
    "Placement",
    "WarmPipelines",
    "choose_placement",
    "diffusion_missing",
    "free_accelerator_memory",
    "hf_offline",
    "is_out_of_memory",
    "job_option",
    "load_pretrained",
    "make_generator",
    "model_problem",
    "pick_seed",
    "place_pipeline",
    "quiet_progress_bars",
    "run_releasing_on_oom",
    "snap_size",
    "step_callback",
    "versions",
    "video_frame_count",
]

_GPU_PACKAGES = ("torch", "diffusers", "transformers", "accelerate")
# A Hugging Face repo id: "org/name" (or a bare "name"), nothing that looks like a path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelMissing(PermanentRenderError):
    """A configured model (setting name and value in the message) cannot be loaded."""


def diffusion_missing() -> str | None:
    """None when torch, diffusers, transformers and accelerate are installed; otherwise
    the reason (without importing any of them)."""
    missing = [name for name in _GPU_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return f"needs {', '.join(missing)}; install it with: pip install 'storyworld[gpu]'"
    return None


def hf_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(value: str) -> bool:
    return (
        value.startswith(("/", ".", "~"))
        or "\\" in value
        or value.count("/") > 1
        or not _REPO_ID.match(value)
    )


def _in_hf_cache(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an invalid repo id, an unreadable cache: not there
        return False
    return isinstance(found, str)


def model_problem(setting: str, value: str, marker: str = "model_index.json") -> str | None:
    """None if the model named by `setting` (an env name) can be loaded here; otherwise
    what is missing, for `availability()` and the beat's error.

    `value` is a local folder (it must hold `marker`) or a Hugging Face id, which must be
    in the local cache when HF_HUB_OFFLINE=1 (otherwise the first load downloads it).
    """
    if not value.strip():
        return f"{setting} is not set"
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            return f"{setting} '{value}' is a folder without {marker} (not a diffusers model)"
        return _missing_components(setting, value, path / marker)
    if _looks_like_path(value):
        return f"{setting} '{value}' does not exist"
    if _in_hf_cache(value, marker):
        return None
    if hf_offline():
        return f"{setting} '{value}' not found locally and HF_HUB_OFFLINE=1"
    return None


def _missing_components(setting: str, value: str, index: Path) -> str | None:
    """For a pipeline folder: the component folders model_index.json names but lacks."""
    if index.name != "model_index.json":
        return None
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{setting} '{value}' has an unreadable model_index.json"
    if not isinstance(entries, dict):
        return f"{setting} '{value}' has an unreadable model_index.json"
    missing = [
        name
        for name, spec in entries.items()
        if not name.startswith("_")
        and isinstance(spec, list)
        and None not in spec
        and not (index.parent / name).is_dir()
    ]
    if missing:
        return f"{setting} '{value}' lacks the folder(s) {', '.join(sorted(missing))}"
    return None


@dataclass(frozen=True)
class Placement:
    """Where a pipeline runs: a torch device and the dtype of its weights."""

    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


def choose_placement() -> Placement:
    """bf16 on a CUDA GPU that supports it, else fp16 on CUDA; float32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Placement("cuda", dtype)
    return Placement("cpu", torch.float32)


def load_pretrained(cls: Any, setting: str, value: str, placement: Placement, **kwargs: Any) -> Any:
    """`cls.from_pretrained(value)` offline-aware, in `placement`'s dtype.

    On CUDA the fp16 weight variant is tried first (half the download and disk), then the
    full weights; on the CPU the other way round. A model that cannot be found raises
    `ModelMissing` naming the setting.
    """
    import torch

    _quiet_loading_bars()
    local = Path(value).expanduser().is_dir()
    source = str(Path(value).expanduser()) if local else value
    half = placement.dtype in (torch.float16, torch.bfloat16)
    variants: tuple[str | None, ...] = ("fp16", None) if half else (None, "fp16")
    online = not (local or hf_offline())
    errors: dict[str | None, Exception] = {}
    for variant in variants:
        try:
            return cls.from_pretrained(
                source,
                **{_dtype_keyword(): placement.dtype},
                variant=variant,
                local_files_only=not online,
                **kwargs,
            )
        except (OSError, ValueError, KeyError) as e:  # missing or broken files, no variant
            if online and _is_network_error(e):
                raise TransientRenderError(
                    f"downloading {setting} '{value}' failed: {_first_line(e)}"
                ) from None
            errors[variant] = e
            log.debug("loading %s %r (variant %s) failed: %s", setting, value, variant, e)
    # The attempt without a variant says best what is missing.
    reason = _first_line(errors.get(None) or next(iter(errors.values()), None))
    where = "local folder" if local else "Hugging Face id"
    offline = " (HF_HUB_OFFLINE=1, only the local cache is read)" if hf_offline() else ""
    raise ModelMissing(f"cannot load {setting} '{value}' ({where}){offline}: {reason}")


def _is_network_error(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "TimeoutError", "ConnectTimeout"}) or (
        "connection" in str(error).lower() and "local_files_only" not in str(error)
    )


def _quiet_loading_bars() -> None:
    """No tqdm bars for loading either: they would flood the worker's log."""
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
    try:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass


def _dtype_keyword() -> str:
    """diffusers renamed `torch_dtype` to `dtype` (the old name warns); use what it has."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def _first_line(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error).strip()
    if isinstance(error, KeyError):
        text = f"missing entry {text} in its config"
    return text.splitlines()[0] if text else type(error).__name__


class WarmPipelines:
    """Loaded pipelines by key, one per process, shared by every backend instance.

    Loading happens once per key even when two threads ask at the same time; `use()`
    serialises calls into one pipeline (diffusers pipelines keep scheduler state).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipes: dict[tuple[Any, ...], Any] = {}
        self._key_locks: dict[tuple[Any, ...], threading.RLock] = {}
        self.loads = 0  # how many times a pipeline was loaded (tests, describe)

    def _key_lock(self, key: tuple[Any, ...]) -> threading.RLock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.RLock())

    def get(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        """The pipeline for `key`, loading it with `load()` the first time."""
        with self._key_lock(key):
            pipe = self._pipes.get(key)
            if pipe is None:
                pipe = load()
                with self._lock:
                    self._pipes[key] = pipe
                    self.loads += 1
            return pipe

    @contextmanager
    def use(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Iterator[Any]:
        """The pipeline for `key`, held exclusively for one render."""
        with self._key_lock(key):
            yield self.get(key, load)

    def is_loaded(self, key: tuple[Any, ...]) -> bool:
        with self._lock:
            return key in self._pipes

    def drop(self, key: tuple[Any, ...]) -> bool:
        """Forget the pipeline for `key` (its memory is freed once nothing holds it)."""
        with self._lock:
            return self._pipes.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()
            self.loads = 0


#: The process-wide cache the backends use.
PIPELINES = WarmPipelines()


def free_accelerator_memory() -> None:
    """Collect garbage and hand cached CUDA blocks back, after a pipeline was dropped."""
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA (or other accelerator) out-of-memory errors."""
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:
        pass
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_releasing_on_oom(work: Callable[[], T], release: Callable[[], None], what: str) -> T:
    """`work()`, with an out-of-memory error turned into a `TransientRenderError` after
    `release()`, so the worker lives on and the next job reloads the pipeline.

    `release()` runs after the except block, when the error's traceback (and the tensors
    its frames hold) is gone, so the memory really comes back.
    """
    try:
        return work()
    except Exception as e:
        if isinstance(e, (TransientRenderError, PermanentRenderError, BackendUnavailable)):
            raise
        if not is_out_of_memory(e):
            raise
        log.warning("out of memory while %s; releasing the pipeline", what)
    release()
    raise TransientRenderError(
        f"out of memory while {what}; the pipeline was released and is reloaded for the next job"
    )


def step_callback(
    ctx: RenderContext, steps: int, *, offset: int = 0, total: int | None = None
) -> Callable[..., dict[str, Any]]:
    """A diffusers `callback_on_step_end` that reports step `offset + i` of `total` and
    stops a cancelled job (`ctx.progress` raises `RenderCancelled`) at the next step.

    `offset` and `total` let two pipelines in one render (a keyframe, then the video)
    share one count. Some schedulers take a step more than asked (PNDM); the count stays
    within this pipeline's share.
    """
    end = offset + steps
    overall = total if total is not None else end

    def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        ctx.progress(min(offset + step + 1, end), overall)
        return kwargs

    return on_step_end


def job_option(spec: RenderSpec, name: str, default: Any, kind: type) -> Any:
    """`spec.options[name]` as `kind`, or `default`; a value of the wrong kind is the
    job's fault (permanent), not the worker's."""
    value = spec.options.get(name)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise PermanentRenderError(
            f"job option {name}={value!r} is not a {kind.__name__}"
        ) from None


def pick_seed(seed: int | None) -> int:
    """The job's seed, or a fresh one (recorded with the clip so the beat can be redone)."""
    return seed if seed is not None else secrets.randbits(31)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: the same seed gives the same noise on any device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def snap_size(width: int, height: int, multiple: int = 8) -> tuple[int, int]:
    """The nearest size whose sides are multiples of `multiple` (what the UNet and VAE
    need); the worker scales the frames back to the job's size."""

    def snap(v: int) -> int:
        return max(multiple, round(v / multiple) * multiple)

    return snap(width), snap(height)


def versions() -> dict[str, str]:
    """Versions of the packages that produced a clip, for its settings record."""
    out: dict[str, str] = {}
    for name in ("torch", "diffusers", "transformers"):
        try:
            out[f"{name}_version"] = importlib.import_module(name).__version__
        except Exception:
            pass
    return out


def quiet_progress_bars(pipe: Any) -> None:
    """Progress goes to the heartbeat; tqdm bars would only flood the worker's log."""
    try:
        pipe.set_progress_bar_config(disable=True)
    except Exception:
        pass


#: GPU_OFFLOAD values: keep the whole pipeline on the GPU, move whole models in and out
#: of it (about a third of the memory, a little slower), or stream layer by layer (the
#: least memory, much slower).
OFFLOAD_MODES = ("none", "model", "sequential")


def place_pipeline(pipe: Any, placement: Placement, offload: str = "none") -> str:
    """Put `pipe` where it runs, with `GPU_OFFLOAD` and VAE tiling applied on CUDA.

    Returns the offload mode in effect ("none" on the CPU, where offloading means
    nothing). VAE tiling decodes large frames in tiles so the decoder's peak does not
    decide the card a clip needs.
    """
    mode = offload if offload in OFFLOAD_MODES else "none"
    if placement.device != "cuda":
        pipe.to(placement.device)
        return "none"
    if mode == "model":
        pipe.enable_model_cpu_offload()
    elif mode == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(placement.device)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    return mode


def video_frame_count(wanted: int, multiple: int, cap: int) -> int:
    """The frame count a video model accepts closest to `wanted`: `multiple * k + 1`
    (Wan: 4, LTX: 8), at least one step of motion, at most `cap` (0: no cap)."""
    k = max(1, round((wanted - 1) / multiple))
    n = multiple * k + 1
    if cap:
        while n > cap and k > 1:
            k -= 1
            n = multiple * k + 1
    return n
