"""Settings: `.env` found and parsed, every name known, nothing contradictory."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from urllib.parse import urlsplit

from storyworld import config
from storyworld.config import ConfigError, Settings, load_settings
from storyworld.doctor.report import Check, Status
from storyworld.protocol import KNOWN_BACKENDS

__all__ = ["check_settings", "known_names"]

#: Names StoryWorld reads that are not settings of its own (other tools' or the platform's).
OTHER_NAMES = {
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "CUDA_VISIBLE_DEVICES",
    "PYTORCH_CUDA_ALLOC_CONF",
    "RUNPOD_POD_ID",
    "PYTHONUNBUFFERED",
    "STORYWORLD_PARENT_PID",
    "STORYWORLD_TEST_REDIS",
    "NO_COLOR",
    "TZ",
}
# Names whose values are secrets: *_KEY, or with one of these in them (KEYFRAME_MODEL is not).
_SECRET_HINTS = ("SECRET", "TOKEN", "PASSWORD", "_KEY_")


def known_names() -> set[str]:
    return set(config._ENV) | OTHER_NAMES


def _hide_secrets(values: dict[str, str]) -> None:
    """Register every secret-looking value so that no line can show it, even when the
    settings themselves fail to load."""
    for name, value in values.items():
        secret = name.endswith("_KEY") or any(h in name for h in _SECRET_HINTS)
        if value and secret:
            config._register_secret(value)
        if value and "://" in value:
            try:
                pw = urlsplit(value).password
            except ValueError:
                pw = None
            if pw:
                config._register_secret(pw)


def _parse_env_file(path: Path) -> tuple[dict[str, str], list[int]]:
    from dotenv.parser import parse_stream

    values: dict[str, str] = {}
    bad: list[int] = []
    with path.open(encoding="utf-8-sig") as f:
        for b in parse_stream(f):
            if b.error:
                bad.append(b.original.line)
            elif b.key is not None:
                values[b.key] = b.value or ""
    return values, bad


def _names_check(file_values: dict[str, str], env_file: Path | None) -> list[Check]:
    known = known_names()
    ours = sorted(config._ENV)
    prefixes = {n.split("_")[0] + "_" for n in ours}
    out = []
    candidates = [(n, ".env") for n in file_values]
    # In the process environment only names that look like ours: it holds everything else.
    candidates += [
        (n, "the environment")
        for n in os.environ
        if n not in file_values and n.startswith(tuple(prefixes)) and n not in known
    ]
    for name, where in candidates:
        if name in known:
            continue
        close = difflib.get_close_matches(name, ours, n=1, cutoff=0.75)
        if close:
            out.append(
                Check(
                    f"settings.name.{name}",
                    Status.WARN,
                    f"{name} (in {where}) is not a setting; did you mean {close[0]}?",
                    fix=f"rename {name} to {close[0]}",
                    data={"name": name, "closest": close[0], "where": where},
                )
            )
        elif where == ".env":
            out.append(
                Check(
                    f"settings.name.{name}",
                    Status.WARN,
                    f"{name} in {env_file} is not a StoryWorld setting and is ignored",
                    fix=f"remove {name} from {env_file} (see .env.example for the names)",
                    data={"name": name, "closest": None, "where": where},
                )
            )
    if not out:
        out.append(Check("settings.names", Status.OK, "every setting name is recognised"))
    return out


def _contradictions(s: Settings, values: dict[str, str]) -> list[Check]:
    out = []
    local = values.get("LOCAL_MODE", "").strip().lower() in {"1", "true", "yes", "on"}
    if local and s.redis_url:
        out.append(
            Check(
                "settings.local_mode",
                Status.WARN,
                "LOCAL_MODE=true and REDIS_URL is set: REDIS_URL wins, no local default",
                fix="remove LOCAL_MODE (or set LOCAL_MODE=false) when REDIS_URL points at a server",
            )
        )
    if s.s3_endpoint:
        parts = urlsplit(s.s3_endpoint.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            out.append(
                Check(
                    "settings.s3_endpoint",
                    Status.FAIL,
                    f"S3_ENDPOINT {s.s3_endpoint!r} is not a URL",
                    fix="write it as https://<account id>.r2.cloudflarestorage.com (R2) or "
                    "http(s)://host:port",
                )
            )
        if not (s.s3_bucket or s.storage_url.startswith("s3://")):
            out.append(
                Check(
                    "settings.s3_bucket",
                    Status.FAIL,
                    "S3_ENDPOINT is set but S3_BUCKET is not",
                    fix="set S3_BUCKET to the bucket for artifacts",
                )
            )
    if s.default_backend not in KNOWN_BACKENDS:
        out.append(
            Check(
                "settings.default_backend",
                Status.FAIL,
                f"DEFAULT_BACKEND {s.default_backend!r} is not a backend",
                fix=f"use one of {', '.join(KNOWN_BACKENDS)}",
            )
        )
    out += _fallbacks(s)
    if s.job_queue == s.result_queue:
        out.append(
            Check(
                "settings.queues",
                Status.FAIL,
                "JOB_QUEUE and RESULT_QUEUE are the same list",
                fix="give them different names "
                "(defaults storyworld:gpu:jobs, storyworld:gpu:results)",
            )
        )
    if not out:
        out.append(Check("settings.consistent", Status.OK, "no contradictory settings"))
    return out


def _fallbacks(s: Settings) -> list[Check]:
    """FALLBACK_BACKENDS is pairs FROM=TO. Falling back *to* the default is fine (the
    example in .env.example does); a bare name, a backend falling back to itself, or a
    cycle is not."""
    out = []
    pairs: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in s.fallback_backends.split(","))):
        src, sep, dst = (x.strip() for x in pair.partition("="))
        if not sep and src in KNOWN_BACKENDS:
            out.append(
                Check(
                    "settings.fallback_backends",
                    Status.FAIL,
                    f"FALLBACK_BACKENDS names {src!r} alone"
                    + (" (the default backend)" if src == s.default_backend else "")
                    + ": it takes pairs FROM=TO",
                    fix=f"write FALLBACK_BACKENDS=svd={src} to make {src} the fallback of svd",
                )
            )
        elif not sep or src not in KNOWN_BACKENDS or dst not in KNOWN_BACKENDS:
            out.append(
                Check(
                    "settings.fallback_backends",
                    Status.FAIL,
                    f"FALLBACK_BACKENDS entry {pair!r} is not FROM=TO of known backends",
                    fix="write e.g. FALLBACK_BACKENDS=svd=animatediff,animatediff=animatic "
                    f"(backends: {', '.join(KNOWN_BACKENDS)})",
                )
            )
        elif src == dst:
            out.append(
                Check(
                    "settings.fallback_backends",
                    Status.WARN,
                    f"FALLBACK_BACKENDS {pair!r} falls back to itself",
                    fix="name a different backend to fall back to, or remove the entry",
                )
            )
        else:
            pairs[src] = dst
    for start in pairs:
        seen, b = [start], pairs[start]
        while b in pairs and b not in seen:
            seen.append(b)
            b = pairs[b]
        if b == start and start == min(seen):
            out.append(
                Check(
                    "settings.fallback_backends",
                    Status.WARN,
                    f"FALLBACK_BACKENDS goes round in a circle: {' -> '.join([*seen, start])}",
                    fix="end the chain at a backend without a fallback (animatic, say)",
                )
            )
    return out


def check_settings(env_file: str | None) -> tuple[Settings | None, list[Check]]:
    """Load the settings the way every program does, and look at what it read."""
    checks = []
    path = Path(env_file) if env_file else None
    file_values: dict[str, str] = {}
    if path is not None and path.is_file():
        file_values, bad = _parse_env_file(path)
        _hide_secrets(file_values)
        if bad:
            checks.append(
                Check(
                    "settings.env_file",
                    Status.FAIL,
                    f"{path} has lines that cannot be read: {', '.join(map(str, bad))}",
                    fix="write each line as NAME=value (quote values with spaces or #)",
                )
            )
        else:
            checks.append(
                Check(
                    "settings.env_file",
                    Status.OK,
                    f"{path} found and parsed ({len(file_values)} names)",
                    data={"path": str(path), "names": len(file_values)},
                )
            )
    else:
        checks.append(
            Check(
                "settings.env_file",
                Status.OK,
                f"no {path or '.env'} file; settings come from the environment only",
                data={"path": str(path) if path else None, "names": 0},
            )
        )
    _hide_secrets(dict(os.environ))
    try:
        settings = load_settings(env_file=env_file)
    except ConfigError as e:
        checks.append(Check("settings.load", Status.FAIL, str(e), fix=_fix_for(str(e))))
        checks += _names_check(file_values, path)
        return None, checks
    checks += _names_check(file_values, path)
    checks += _contradictions(settings, {**file_values, **os.environ})
    return settings, checks


def _fix_for(message: str) -> str:
    name = message.split(" ")[0]
    return f"correct {name} in .env or the environment (see .env.example)"
