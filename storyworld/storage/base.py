"""The ArtifactStore interface and the deterministic key layout shared by every store."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ArtifactStore",
    "StorageError",
    "StoredObject",
    "clip_key",
    "episode_key",
    "keyframe_key",
    "settings_key",
    "sha256_file",
]

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".json": "application/json",
    ".jpg": "image/jpeg",
    ".m4a": "audio/mp4",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
}


class StorageError(RuntimeError):
    """A storage operation failed. `transient` says whether a retry may help."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    content_type: str
    seconds: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def bytes_per_s(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0


def _beat_dir(episode_id: str, beat_index: int, attempt: int) -> str:
    return f"episodes/{episode_id}/beats/{beat_index:03d}/attempt-{attempt}"


def clip_key(episode_id: str, beat_index: int, attempt: int) -> str:
    """`episodes/{episode}/beats/{NNN}/attempt-{k}/clip.mp4`: one object per attempt."""
    return f"{_beat_dir(episode_id, beat_index, attempt)}/clip.mp4"


def keyframe_key(episode_id: str, beat_index: int, attempt: int) -> str:
    return f"{_beat_dir(episode_id, beat_index, attempt)}/keyframe.png"


def settings_key(episode_id: str, beat_index: int, attempt: int) -> str:
    """The settings (model, seed, steps) that produced a clip, so it can be reproduced."""
    return f"{_beat_dir(episode_id, beat_index, attempt)}/settings.json"


def last_frame_key(episode_id: str, beat_index: int, attempt: int) -> str:
    """A clip's last frame (PNG), where the next beat of the scene starts (continuity)."""
    return f"{_beat_dir(episode_id, beat_index, attempt)}/last-frame.png"


def audio_key(episode_id: str, beat_index: int, attempt: int) -> str:
    """A beat's speech (AAC in MP4), the same sound as the clip's own audio track."""
    return f"{_beat_dir(episode_id, beat_index, attempt)}/speech.m4a"


def episode_key(episode_id: str) -> str:
    return f"episodes/{episode_id}/episode.mp4"


def subtitles_key(episode_id: str, fmt: str) -> str:
    """`episodes/{episode}/episode.vtt` or `.srt`, beside the episode."""
    return f"episodes/{episode_id}/episode.{fmt}"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def content_type_for(key: str) -> str:
    return CONTENT_TYPES.get(Path(key).suffix.lower(), "application/octet-stream")


ProgressCallback = Callable[[int], None]


class ArtifactStore(ABC):
    """Where clips, keyframes and episodes live. Keys are relative (`episodes/...`);
    a store may add its own prefix. Every put records the object's SHA-256 and size."""

    #: Short name for messages and the console ("local", "s3").
    kind: str = "?"

    @abstractmethod
    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> StoredObject:
        """Store a local file under `key` atomically: readers see all of it or nothing.
        `progress`, if given, is called with the bytes sent so far."""

    @abstractmethod
    def get_file(self, key: str, dest: str | Path, *, verify: bool = True) -> StoredObject:
        """Copy the object to `dest`; with `verify`, check its SHA-256 against the stored one."""

    @abstractmethod
    def head(self, key: str) -> StoredObject | None:
        """The object's size, type and checksum, or None if it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; no error if it is absent."""

    @abstractmethod
    def url_for(self, key: str, expires_s: int | None = None) -> str:
        """A link a person can open: presigned, public, or `file://`. Made on demand."""

    @abstractmethod
    def check(self) -> None:
        """Verify the store is usable (exists, credentials, write permission) before work
        starts; raise StorageError with a message an operator can act on."""

    def describe(self) -> str:
        """One line for logs and the console; never contains secrets."""
        return self.kind
