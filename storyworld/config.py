"""Settings from the environment and `.env`, in one place.

Every setting has an environment name (the seed's names are the public contract and keep
working). Secrets are held as `Secret` so that printing, logging or repr never shows them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values

__all__ = ["ConfigError", "Secret", "Settings", "load_settings", "mask_url", "redact"]


class ConfigError(ValueError):
    """A setting is missing or invalid; the message says which and how to fix it."""


class Secret:
    """A string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or ""

    def get(self) -> str:
        """The real value, for the one place that needs it (a client constructor)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('****')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def mask_url(url: str | None) -> str:
    """A URL with its password (and user token) replaced by ****, for display."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: show what was written, masked
        port = parts.netloc.rpartition("@")[2].rpartition(":")[2] or None
    if port:
        host = f"{host}:{port}"
    user = parts.username or ""
    netloc = f"{user}:****@{host}" if parts.password is not None else f"****@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_secret_values: set[str] = set()


def redact(text: str) -> str:
    """Replace every known secret value and any URL password in `text` with ****."""
    for value in _secret_values:
        if value and len(value) >= 4:
            text = text.replace(value, "****")
    return re.sub(r"(\w+://[^:/@\s]*:)[^@\s]+@", r"\1****@", text)


def _register_secret(value: str) -> None:
    if value:
        _secret_values.add(value)


@dataclass(frozen=True)
class Settings:
    """All of StoryWorld's settings. Build with `load_settings()`."""

    # Where the local default lives: embedded server data, local.db, artifacts.
    home: Path = field(default_factory=lambda: Path("."))
    # Redis. None means the local default: an embedded server in `home`.
    redis_url: Secret = field(default_factory=lambda: Secret(""))
    local_mode: bool = True
    job_queue: str = "storyworld:gpu:jobs"
    result_queue: str = "storyworld:gpu:results"
    redis_ca_cert: str = ""
    # Database and storage.
    database_url: str = ""
    storage_url: str = ""
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_region: str = "auto"
    s3_access_key: Secret = field(default_factory=lambda: Secret(""))
    s3_secret_key: Secret = field(default_factory=lambda: Secret(""))
    s3_path_style: bool = False
    s3_public_base_url: str = ""
    s3_presign_expiry_s: int = 3600
    s3_multipart_threshold_mb: int = 16
    # Rendering.
    default_backend: str = "animatic"
    use_diffusion: bool = False
    max_beat_seconds: float = 30.0
    #: The most beats a script may plan to (a 120-page feature plans to about 900).
    max_beats: int = 5000
    default_beat_seconds: float = 4.0
    default_width: int = 512
    default_height: int = 288
    default_fps: int = 12
    # Protocol timings (seconds). Defaults are chosen for a metered Redis.
    # A SIGKILLed busy worker's job runs again within LEASE + RECLAIM_INTERVAL (15 s).
    # Leases are renewed only while a job is held; an idle worker costs one heartbeat and one
    # blocking wait per WORKER_IDLE_BLOCK_SECONDS (12 commands an hour).
    lease_s: float = 12.0
    lease_renew_s: float = 4.0
    reclaim_interval_s: float = 3.0
    worker_idle_block_s: float = 600.0
    # An idle engine blocks this long; its lease (ENGINE_LEASE_SECONDS) outlasts the block.
    # While it has work it holds a short lease instead, renewed at each tick, so a standby
    # (or the engine restarted) takes over within ENGINE_BUSY_LEASE_SECONDS of its death;
    # an idle leader that died is found out when the next work arrives (it must answer).
    engine_idle_block_s: float = 1200.0
    engine_lease_s: float = 1800.0
    engine_busy_lease_s: float = 10.0
    #: Dead-letter a job no live worker serves after this long waiting (0: never).
    unserved_timeout_s: float = 0.0
    heartbeat_ttl_s: float = 1260.0
    progress_interval_s: float = 10.0
    max_deliveries: int = 3
    max_attempts: int = 4
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0
    worker_log_lines_interval_s: float = 10.0
    events_maxlen: int = 2000
    # Worker.
    worker_backends: str = ""
    worker_idle_exit_s: float = 0.0
    worker_concurrency: int = 1
    worker_log_file: str = ""
    worker_health_dir: str = ""
    shutdown_grace_s: float = 60.0
    # A render running longer than this is stopped and reported failed (transient).
    render_timeout_s: float = 3600.0
    fallback_backends: str = ""
    # GPU backends.
    animatediff_base_model: str = "runwayml/stable-diffusion-v1-5"
    animatediff_motion_adapter: str = "guoyww/animatediff-motion-adapter-v1-5-2"
    svd_model: str = "stabilityai/stable-video-diffusion-img2vid-xt"
    keyframe_model: str = "stabilityai/stable-diffusion-xl-base-1.0"
    # Film backends (wave 2).
    wan_model: str = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    ltx_model: str = "Lightricks/LTX-Video"
    ip_adapter_model: str = "h94/IP-Adapter"
    ip_adapter_scale: float = 0.6
    gpu_offload: str = "none"
    vram_routing: bool = False
    consistency_min: float = 0.0
    max_rerolls: int = 2
    gemini_api_key: Secret = field(default_factory=lambda: Secret(""))
    veo_model: str = "veo-3.0-generate-001"
    veo_api_base: str = "https://generativelanguage.googleapis.com/v1beta"
    veo_fallback_backend: str = ""
    veo_deadline_s: float = 600.0
    # Console and API.
    redis_daily_budget: int = 10_000
    api_token: Secret = field(default_factory=lambda: Secret(""))
    # Webhooks (storyworld.engine.webhooks): URLs may carry tokens, so both are secrets.
    webhook_url: Secret = field(default_factory=lambda: Secret(""))
    webhook_secret: Secret = field(default_factory=lambda: Secret(""))
    #: For the console's cost estimates: what an hour of one GPU worker costs (0: unknown).
    gpu_cost_per_hour: float = 0.0

    def describe(self) -> dict[str, Any]:
        """Settings as a dict safe to print: secrets and URL passwords are masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = repr(value) if f.name != "redis_url" else mask_url(value.get())
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, str) and "://" in value:
                value = mask_url(value)
            out[f.name] = value
        return out

    def describe_env(self) -> dict[str, Any]:
        """`describe()` under the environment names users set (LEASE_SECONDS, not lease_s)."""
        by_field = {name: env for env, name in _ENV.items()}
        return {by_field.get(k, k): v for k, v in self.describe().items()}

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


# Environment name -> field name. Seed names first; they are the public contract.
_ENV = {
    "STORYWORLD_HOME": "home",
    "REDIS_URL": "redis_url",
    "LOCAL_MODE": "local_mode",
    "JOB_QUEUE": "job_queue",
    "RESULT_QUEUE": "result_queue",
    "REDIS_CA_CERT": "redis_ca_cert",
    "DATABASE_URL": "database_url",
    "STORAGE_URL": "storage_url",
    "S3_ENDPOINT": "s3_endpoint",
    "S3_BUCKET": "s3_bucket",
    "S3_PREFIX": "s3_prefix",
    "S3_REGION": "s3_region",
    "S3_ACCESS_KEY": "s3_access_key",
    "S3_SECRET_KEY": "s3_secret_key",
    "S3_PATH_STYLE": "s3_path_style",
    "S3_PUBLIC_BASE_URL": "s3_public_base_url",
    "S3_PRESIGN_EXPIRY": "s3_presign_expiry_s",
    "S3_MULTIPART_THRESHOLD_MB": "s3_multipart_threshold_mb",
    "DEFAULT_BACKEND": "default_backend",
    "USE_DIFFUSION": "use_diffusion",
    "MAX_BEAT_SECONDS": "max_beat_seconds",
    "MAX_BEATS": "max_beats",
    "DEFAULT_BEAT_SECONDS": "default_beat_seconds",
    "DEFAULT_WIDTH": "default_width",
    "DEFAULT_HEIGHT": "default_height",
    "DEFAULT_FPS": "default_fps",
    "LEASE_SECONDS": "lease_s",
    "LEASE_RENEW_SECONDS": "lease_renew_s",
    "RECLAIM_INTERVAL_SECONDS": "reclaim_interval_s",
    "WORKER_IDLE_BLOCK_SECONDS": "worker_idle_block_s",
    "ENGINE_IDLE_BLOCK_SECONDS": "engine_idle_block_s",
    "ENGINE_LEASE_SECONDS": "engine_lease_s",
    "ENGINE_BUSY_LEASE_SECONDS": "engine_busy_lease_s",
    "UNSERVED_TIMEOUT": "unserved_timeout_s",
    "HEARTBEAT_TTL_SECONDS": "heartbeat_ttl_s",
    "PROGRESS_INTERVAL_SECONDS": "progress_interval_s",
    "MAX_DELIVERIES": "max_deliveries",
    "MAX_ATTEMPTS": "max_attempts",
    "RETRY_BASE_SECONDS": "retry_base_s",
    "RETRY_MAX_SECONDS": "retry_max_s",
    "WORKER_LOG_LINES_INTERVAL_SECONDS": "worker_log_lines_interval_s",
    "EVENTS_MAXLEN": "events_maxlen",
    "WORKER_BACKENDS": "worker_backends",
    "WORKER_IDLE_EXIT_SECONDS": "worker_idle_exit_s",
    "WORKER_CONCURRENCY": "worker_concurrency",
    "WORKER_LOG_FILE": "worker_log_file",
    "WORKER_HEALTH_DIR": "worker_health_dir",
    "SHUTDOWN_GRACE_SECONDS": "shutdown_grace_s",
    "RENDER_TIMEOUT_SECONDS": "render_timeout_s",
    "FALLBACK_BACKENDS": "fallback_backends",
    "ANIMATEDIFF_BASE_MODEL": "animatediff_base_model",
    "ANIMATEDIFF_MOTION_ADAPTER": "animatediff_motion_adapter",
    "SVD_MODEL": "svd_model",
    "KEYFRAME_MODEL": "keyframe_model",
    "WAN_MODEL": "wan_model",
    "LTX_MODEL": "ltx_model",
    "IP_ADAPTER_MODEL": "ip_adapter_model",
    "IP_ADAPTER_SCALE": "ip_adapter_scale",
    "GPU_OFFLOAD": "gpu_offload",
    "VRAM_ROUTING": "vram_routing",
    "CONSISTENCY_MIN": "consistency_min",
    "MAX_REROLLS": "max_rerolls",
    "GEMINI_API_KEY": "gemini_api_key",
    "VEO_MODEL": "veo_model",
    "VEO_API_BASE": "veo_api_base",
    "VEO_FALLBACK_BACKEND": "veo_fallback_backend",
    "VEO_DEADLINE_SECONDS": "veo_deadline_s",
    "REDIS_DAILY_BUDGET": "redis_daily_budget",
    "API_TOKEN": "api_token",
    "WEBHOOK_URL": "webhook_url",
    "WEBHOOK_SECRET": "webhook_secret",
    "GPU_COST_PER_HOUR": "gpu_cost_per_hour",
}


def _default_home() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("storyworld", appauthor=False))


def _convert(name: str, env_name: str, raw: str, kind: type) -> Any:
    raw = raw.strip()
    if kind is bool:
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{env_name} must be true or false, not {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{env_name} must be a whole number, not {raw!r}") from None
    if kind is float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{env_name} must be a number, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{env_name} must not be negative")
        return value
    if kind is Path:
        return Path(raw).expanduser()
    if kind is Secret:
        _register_secret(raw)
        return Secret(raw)
    return raw


_KINDS = {
    f.name: {"bool": bool, "int": int, "float": float, "Path": Path, "Secret": Secret}.get(
        str(f.type), str
    )
    for f in fields(Settings)
}


def load_settings(
    env: dict[str, str] | None = None, env_file: str | os.PathLike[str] | None = ".env"
) -> Settings:
    """Read settings from `.env` (if present) overlaid by the process environment.

    `LOCAL_MODE` defaults to true when no `REDIS_URL` is set: the local default.
    """
    values: dict[str, str] = {}
    if env_file and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if env is None else env)

    kwargs: dict[str, Any] = {}
    for env_name, name in _ENV.items():
        if env_name in values:
            kwargs[name] = _convert(name, env_name, values[env_name], _KINDS[name])
    if "home" not in kwargs:
        kwargs["home"] = _default_home()
    redis_url: Secret = kwargs.get("redis_url", Secret(""))
    if "local_mode" not in kwargs:
        kwargs["local_mode"] = not bool(redis_url)
    elif not kwargs["local_mode"] and not redis_url:
        raise ConfigError("LOCAL_MODE is false but REDIS_URL is not set")
    if redis_url:
        url = redis_url.get()
        if not url.startswith(("redis://", "rediss://", "unix://", "valkey://", "valkeys://")):
            raise ConfigError(
                f"REDIS_URL must start with redis://, rediss:// or unix:// (got {mask_url(url)!r})"
            )
        try:
            pw = urlsplit(url).password
        except ValueError:
            pw = None
        if pw:
            _register_secret(pw)
    settings = Settings(**kwargs)
    if settings.gpu_offload not in ("none", "model", "sequential"):
        raise ConfigError(
            f"GPU_OFFLOAD must be none, model or sequential, not {settings.gpu_offload!r}"
        )
    if settings.lease_renew_s >= settings.lease_s:
        raise ConfigError("LEASE_RENEW_SECONDS must be shorter than LEASE_SECONDS")
    if settings.engine_idle_block_s >= settings.engine_lease_s:
        raise ConfigError("ENGINE_IDLE_BLOCK_SECONDS must be shorter than ENGINE_LEASE_SECONDS")
    if settings.reclaim_interval_s * 2 > settings.engine_busy_lease_s:
        raise ConfigError(
            "ENGINE_BUSY_LEASE_SECONDS must be at least twice RECLAIM_INTERVAL_SECONDS "
            "(the busy engine renews its lease at each reclaim tick)"
        )
    return settings
