"""The local-folder store: same key layout as S3, atomic writes, checksums."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from storyworld.config import load_settings
from storyworld.storage import (
    LocalStore,
    StorageError,
    StoredObject,
    clip_key,
    default_artifact_dir,
    episode_key,
    keyframe_key,
    open_store,
    sha256_file,
)
from storyworld.storage import local as local_module


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*") if p.name.startswith((".part-", ".check-")))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "artifacts")


def test_put_and_get_round_trip(store, tmp_path):
    src = _file(tmp_path / "clip.mp4", os.urandom(3 * 1024 * 1024 + 17))
    key = clip_key("ep1", 2, 1)
    sent: list[int] = []

    put = store.put_file(key, src, metadata={"backend": "animatic"}, progress=sent.append)

    assert put == StoredObject(
        key=key,
        size=src.stat().st_size,
        sha256=sha256_file(src),
        content_type="video/mp4",
        seconds=put.seconds,
        metadata={"backend": "animatic"},
    )
    assert sent[-1] == put.size
    assert (store.root / "episodes/ep1/beats/002/attempt-1/clip.mp4").read_bytes() == (
        src.read_bytes()
    )
    assert store.head(key) == StoredObject(
        key=key,
        size=put.size,
        sha256=put.sha256,
        content_type="video/mp4",
        metadata={"backend": "animatic"},
    )
    got = store.get_file(key, tmp_path / "out" / "clip.mp4")
    assert got.sha256 == put.sha256
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == src.read_bytes()
    assert _leftovers(tmp_path) == []


def test_content_types_follow_the_key(store, tmp_path):
    src = _file(tmp_path / "x", b"data")
    assert store.put_file(keyframe_key("e", 0, 1), src).content_type == "image/png"
    assert store.put_file(episode_key("e"), src).content_type == "video/mp4"
    assert store.put_file("other.bin", src).content_type == "application/octet-stream"
    assert store.put_file("x.mp4", src, content_type="text/plain").content_type == "text/plain"


def test_failed_write_leaves_the_previous_object_and_no_temp_files(store, tmp_path, monkeypatch):
    key = clip_key("ep", 0, 1)
    first = store.put_file(key, _file(tmp_path / "one.mp4", b"first version" * 1000))

    def copy_half_then_fail(src, out, progress=None):
        out.write(src.read(5000))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(local_module, "_copy_hashing", copy_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        store.put_file(key, _file(tmp_path / "two.mp4", b"second version" * 1000))
    monkeypatch.undo()

    assert store.head(key) == StoredObject(
        key=key, size=first.size, sha256=first.sha256, content_type="video/mp4"
    )
    store.get_file(key, tmp_path / "back.mp4")
    assert (tmp_path / "back.mp4").read_bytes() == b"first version" * 1000
    assert _leftovers(store.root) == []


def test_interrupted_first_write_leaves_nothing(store, tmp_path):
    key = clip_key("ep", 1, 1)

    def interrupt(sent: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put_file(key, _file(tmp_path / "a.mp4", os.urandom(3 << 20)), progress=interrupt)

    assert store.head(key) is None
    assert [p.name for p in store.local_path(key).parent.iterdir()] == []


def test_get_detects_a_corrupt_object(store, tmp_path):
    key = clip_key("ep", 0, 1)
    store.put_file(key, _file(tmp_path / "a.mp4", b"original bytes"))
    store.local_path(key).write_bytes(b"flipped bytes!")  # same size, other content
    dest = _file(tmp_path / "dest.mp4", b"previous")

    with pytest.raises(StorageError, match="corrupt: checksum mismatch") as info:
        store.get_file(key, dest)

    assert not info.value.transient
    assert dest.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []
    store.get_file(key, dest, verify=False)
    assert dest.read_bytes() == b"flipped bytes!"


def test_sidecar_without_object_reads_as_absent(store, tmp_path):
    # What a crash between the sidecar's rename and the object's rename leaves.
    key = clip_key("ep", 3, 1)
    sidecar = Path(str(store.local_path(key)) + ".meta.json")
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text(json.dumps({"sha256": "0" * 64, "size": 1}))
    assert store.head(key) is None
    store.delete(key)
    assert not sidecar.exists()


def test_missing_objects_and_delete(store, tmp_path):
    assert store.head("episodes/none/episode.mp4") is None
    with pytest.raises(StorageError, match="not found"):
        store.get_file("episodes/none/episode.mp4", tmp_path / "x.mp4")
    store.delete("episodes/none/episode.mp4")
    store.put_file("episodes/e/episode.mp4", _file(tmp_path / "e.mp4", b"e"))
    store.delete("episodes/e/episode.mp4")
    assert store.head("episodes/e/episode.mp4") is None


def test_keys_cannot_escape_the_folder(store, tmp_path):
    with pytest.raises(StorageError, match="escapes"):
        store.put_file("../outside.mp4", _file(tmp_path / "a.mp4", b"x"))
    assert not (store.root.parent / "outside.mp4").exists()


def test_url_is_a_file_uri(store, tmp_path):
    store.put_file("episodes/e/episode.mp4", _file(tmp_path / "e.mp4", b"e"))
    assert store.url_for("episodes/e/episode.mp4") == (
        (store.root / "episodes/e/episode.mp4").as_uri()
    )


def test_check_reports_an_unusable_folder(tmp_path):
    LocalStore(tmp_path / "ok").check()
    blocker = _file(tmp_path / "a-file", b"")
    with pytest.raises(StorageError, match="not writable") as info:
        LocalStore(blocker / "artifacts").check()
    assert str(blocker) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_open_store_chooses_the_folder(tmp_path):
    home = tmp_path / "home"
    settings = load_settings(env={"STORYWORLD_HOME": str(home)}, env_file=None)
    store = open_store(settings)
    assert isinstance(store, LocalStore) and store.root == default_artifact_dir(settings)
    other = open_store(settings.with_overrides(storage_url=f"file://{tmp_path}/elsewhere"))
    assert isinstance(other, LocalStore) and other.root == tmp_path / "elsewhere"
    assert other.describe() == f"local folder {tmp_path / 'elsewhere'}"
