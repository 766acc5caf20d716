"""A local folder with the same key layout as the S3 store (the local default)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from storyworld.storage.base import (
    ArtifactStore,
    ProgressCallback,
    StorageError,
    StoredObject,
    content_type_for,
    sha256_file,
)

__all__ = ["LocalStore"]

_META_SUFFIX = ".meta.json"
_CHUNK = 1 << 20


def _copy_hashing(
    src: BinaryIO, out: BinaryIO, progress: ProgressCallback | None = None
) -> tuple[str, int]:
    """Copy `src` to `out` in one pass; the SHA-256 and size of exactly what was written."""
    h = hashlib.sha256()
    size = 0
    while block := src.read(_CHUNK):
        out.write(block)
        h.update(block)
        size += len(block)
        if progress:
            progress(size)
    return h.hexdigest(), size


class LocalStore(ArtifactStore):
    """Objects are files under `root`; each has a `<name>.meta.json` sidecar holding its
    content type, size and SHA-256. Writes go to a temporary file and are renamed into
    place, so a reader never sees half a file."""

    kind = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def _path(self, key: str) -> Path:
        key = key.lstrip("/")
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes the artifact folder")
        return path

    def put_file(
        self,
        key: str,
        path: str | Path,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> StoredObject:
        """Copy `path` to a temporary file beside the destination, then rename it (and
        its sidecar, first) into place. The checksum is of the bytes actually written,
        so a source changing under us cannot produce a mismatched record. `progress`, if
        given, is called with the bytes copied so far."""
        start = time.perf_counter()
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        content_type = content_type or content_type_for(key)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                digest, size = _copy_hashing(src, out, progress)
                out.flush()
                os.fsync(out.fileno())
            meta = {
                "content_type": content_type,
                "size": size,
                "sha256": digest,
                "metadata": dict(metadata or {}),
            }
            meta_tmp = Path(tmp + _META_SUFFIX)
            meta_tmp.write_text(json.dumps(meta))
            # Sidecar first: a crash between the two renames leaves a sidecar without an
            # object (head() says absent), never an object without its checksum.
            os.replace(meta_tmp, str(dest) + _META_SUFFIX)
            os.replace(tmp, dest)
        except BaseException:
            for leftover in (tmp, tmp + _META_SUFFIX):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
            raise
        return StoredObject(
            key=key,
            size=size,
            sha256=digest,
            content_type=content_type,
            seconds=time.perf_counter() - start,
            metadata=dict(metadata or {}),
        )

    def head(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        meta_path = Path(str(path) + _META_SUFFIX)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        return StoredObject(
            key=key,
            size=path.stat().st_size,
            sha256=meta.get("sha256") or sha256_file(path),
            content_type=meta.get("content_type") or content_type_for(key),
            metadata=meta.get("metadata") or {},
        )

    def get_file(self, key: str, dest: str | Path, *, verify: bool = True) -> StoredObject:
        """Copy the object to `dest` through a temporary file; with `verify`, a checksum
        mismatch raises StorageError and leaves `dest` untouched."""
        start = time.perf_counter()
        info = self.head(key)
        if info is None:
            raise StorageError(f"artifact {key!r} not found in {self.root}")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".part-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(self._path(key), "rb") as src:
                got, _ = _copy_hashing(src, out)
            if verify and got != info.sha256:
                raise StorageError(
                    f"artifact {key!r} is corrupt: checksum mismatch "
                    f"(stored {info.sha256[:12]}…, read {got[:12]}…)"
                )
            os.replace(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return StoredObject(
            key=key,
            size=info.size,
            sha256=info.sha256,
            content_type=info.content_type,
            seconds=time.perf_counter() - start,
            metadata=info.metadata,
        )

    def delete(self, key: str) -> None:
        path = self._path(key)
        for p in (path, Path(str(path) + _META_SUFFIX)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass

    def url_for(self, key: str, expires_s: int | None = None) -> str:
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".check-", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise StorageError(
                f"artifact folder {self.root} is not writable: {e.strerror}"
            ) from None

    def describe(self) -> str:
        return f"local folder {self.root}"
