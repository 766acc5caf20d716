"""Render backends, loaded lazily by name so a CPU worker never imports torch."""

from __future__ import annotations

import importlib
import logging

from storyworld.config import Settings
from storyworld.protocol import KNOWN_BACKENDS as PROTOCOL_BACKENDS
from storyworld.worker.backends.base import BackendUnavailable, RenderBackend

log = logging.getLogger(__name__)

#: name -> "module:Class". The GPU backends import torch/diffusers only when loaded.
REGISTRY: dict[str, str] = {
    "animatic": "storyworld.worker.backends.animatic:AnimaticBackend",
    "animatediff": "storyworld.worker.backends.animatediff:AnimateDiffBackend",
    "svd": "storyworld.worker.backends.svd:SVDBackend",
    "veo": "storyworld.worker.backends.veo:VeoBackend",
    "wan": "storyworld.worker.backends.wan:WanBackend",
    "ltx": "storyworld.worker.backends.ltx:LTXBackend",
    "keyframe": "storyworld.worker.backends.keyframe:KeyframeBackend",
}

#: Backends for measuring, served only when named (`--backends bench`); no job of the engine
#: ever names them.
BENCH_REGISTRY: dict[str, str] = {"bench": "storyworld.worker.backends.bench:BenchBackend"}

KNOWN_BACKENDS = tuple(REGISTRY)
assert set(KNOWN_BACKENDS) == set(PROTOCOL_BACKENDS)


def backend_class(name: str) -> type[RenderBackend]:
    """The backend class for `name`; BackendUnavailable says why it cannot be loaded."""
    target = REGISTRY.get(name) or BENCH_REGISTRY.get(name)
    if target is None:
        raise BackendUnavailable(f"unknown backend {name!r} (known: {', '.join(KNOWN_BACKENDS)})")
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(
            f"backend {name!r} needs {e.name or 'a missing package'}; "
            "install it with: pip install 'storyworld[gpu]'"
        ) from None
    return getattr(module, cls_name)


def available_backends(
    settings: Settings, wanted: list[str] | None = None
) -> dict[str, str | None]:
    """For each wanted backend (default: all known), None if it can run here or the reason
    it cannot. A worker advertises only the ones with None."""
    out: dict[str, str | None] = {}
    for name in wanted or list(KNOWN_BACKENDS):
        try:
            out[name] = backend_class(name).availability(settings)
        except BackendUnavailable as e:
            out[name] = str(e)
    return out
