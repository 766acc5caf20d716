"""Artifact storage: choose the store from the settings."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storyworld.config import ConfigError, Settings
from storyworld.storage.base import (
    ArtifactStore,
    StorageError,
    StoredObject,
    audio_key,
    clip_key,
    episode_key,
    keyframe_key,
    last_frame_key,
    settings_key,
    sha256_file,
    subtitles_key,
)
from storyworld.storage.local import LocalStore

__all__ = [
    "ArtifactStore",
    "LocalStore",
    "StorageError",
    "StoredObject",
    "audio_key",
    "clip_key",
    "default_artifact_dir",
    "episode_key",
    "keyframe_key",
    "last_frame_key",
    "open_store",
    "settings_key",
    "sha256_file",
    "subtitles_key",
]


def default_artifact_dir(settings: Settings) -> Path:
    return Path(settings.home) / "artifacts"


def open_store(settings: Settings) -> ArtifactStore:
    """The store the settings ask for.

    - `STORAGE_URL=s3://bucket/prefix`, or `S3_BUCKET` (with `S3_ENDPOINT` for R2): S3.
    - `STORAGE_URL=file:///path`: that folder.
    - otherwise the `artifacts` folder of the data directory.
    """
    url = settings.storage_url.strip()
    if url.startswith("s3://") or (not url and settings.s3_bucket):
        from storyworld.storage.s3 import S3Store

        return S3Store.from_settings(settings)
    if url.startswith("file://"):
        parts = urlsplit(url)
        return LocalStore(Path(unquote(parts.netloc + parts.path)))
    if url:
        raise ConfigError(f"STORAGE_URL must start with file:// or s3:// (got {url!r})")
    return LocalStore(default_artifact_dir(settings))
