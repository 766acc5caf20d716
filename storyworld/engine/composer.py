"""Composer: when every beat of an episode is rendered, concatenate the clips into the
episode and store it, in a thread of its own so dispatch goes on meanwhile.

A transient failure (storage unreachable, a network error) is retried with backoff like
any transient error; the episode stays `composing` meanwhile. A permanent one (a clip
missing, a broken file) fails the episode with the reason.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from storyworld.engine import sound
from storyworld.engine.models import (
    Artifact,
    Beat,
    BeatState,
    Episode,
    EpisodeState,
    Upload,
    transition,
)
from storyworld.engine.retry import RetryPolicy
from storyworld.storage import ArtifactStore, StorageError, episode_key, subtitles_key

__all__ = ["Composer", "is_transient"]

log = logging.getLogger("storyworld.engine")


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the compose may help."""
    if isinstance(exc, StorageError):
        return exc.transient
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc) is OSError


def _json_safe(value: Any) -> Any:
    """JSON has no infinities or NaN (PostgreSQL refuses them): a silent mix measures
    -inf LUFS, stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class Composer:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        policy: RetryPolicy,
        *,
        engine_id: str,
        on_done: Callable[[], None],
        max_attempts: int = 8,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.policy = policy
        self.engine_id = engine_id
        self.on_done = on_done
        self.max_attempts = max_attempts
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compose")
        self._running: dict[str, Future[None]] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Composing, or waiting to retry a compose."""
        with self._lock:
            return bool(self._running or self._retry_at)

    def next_retry_at(self) -> float | None:
        with self._lock:
            return min(self._retry_at.values(), default=None)

    def start(self) -> bool:
        """Start composing every episode whose beats are all done. True if any started."""
        started = False
        now = time.time()
        unfinished = (
            select(Beat.id)
            .where(Beat.episode_id == Episode.id, Beat.state != BeatState.DONE)
            .exists()
        )
        ready = or_(
            Episode.state == EpisodeState.COMPOSING,
            and_(Episode.state == EpisodeState.RENDERING, ~unfinished),
        )
        with self.sessions.begin() as s:
            for episode in s.scalars(select(Episode).where(ready)):
                with self._lock:
                    if episode.id in self._running or self._retry_at.get(episode.id, 0) > now:
                        continue
                if episode.state == EpisodeState.RENDERING:
                    if not episode.beats:
                        continue
                    transition(s, episode, EpisodeState.COMPOSING, "every beat is rendered")
                with self._lock:
                    self._retry_at.pop(episode.id, None)
                    self._running[episode.id] = self._pool.submit(self._run, episode.id)
                started = True
        return started

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    def _run(self, episode_id: str) -> None:
        try:
            self.compose(episode_id)
            with self._lock:
                self._failures.pop(episode_id, None)
        except Exception as e:
            self._failed(episode_id, e)
        finally:
            with self._lock:
                self._running.pop(episode_id, None)
            self.on_done()

    def _failed(self, episode_id: str, e: Exception) -> None:
        with self._lock:
            n = self._failures[episode_id] = self._failures.get(episode_id, 0) + 1
        if is_transient(e) and n < self.max_attempts:
            delay = self.policy.delay(n)
            with self._lock:
                self._retry_at[episode_id] = time.time() + delay
            log.warning(
                "composing episode %s failed (%s); retry %d in %.1f s", episode_id, e, n, delay
            )
            with self.sessions.begin() as s:
                ep = s.get(Episode, episode_id)
                if ep is not None:
                    ep.error = f"compose attempt {n} failed ({e}); retrying in {delay:.0f} s"
            return
        log.exception("composing episode %s failed", episode_id, exc_info=e)
        with self._lock:
            self._failures.pop(episode_id, None)
        with self.sessions.begin() as s:
            ep = s.get(Episode, episode_id)
            if ep is not None and ep.state == EpisodeState.COMPOSING:
                ep.fail(s, f"compose failed: {e}")

    def compose(self, episode_id: str) -> str:
        """Mix and concatenate the beats' clips into the episode (H.264 + AAC at -16 LUFS,
        a mov_text subtitle track) and store it with its .vtt and .srt. Returns its key.
        Clips are read one at a time; nothing holds the whole episode in memory."""
        from storyworld.soundtrack import BeatClip, SoundBeds, compose_episode
        from storyworld.subtitles import to_srt, to_vtt

        with self.sessions() as s:
            ep = s.get(Episode, episode_id)
            if ep is None:
                raise ValueError(f"no episode {episode_id}")
            clips = [(b.clip_key, b.duration_s, sound.beat_cues(s, b)) for b in ep.beats]
            fps, width, height = ep.fps, ep.width, ep.height
            music, ambience, burn = sound.episode_beds(ep)
        if any(k is None for k, _, _ in clips):
            raise StorageError("a beat has no stored clip")
        with tempfile.TemporaryDirectory(prefix="storyworld-compose-") as tmp:
            beats = []
            for i, (key, duration, cues) in enumerate(clips):
                dest = Path(tmp) / f"{i:04d}.mp4"
                self.store.get_file(key, dest)  # type: ignore[arg-type]
                beats.append(BeatClip(dest, max(1, round(duration * fps)), cues))
            out = Path(tmp) / "episode.mp4"
            mix = compose_episode(
                beats,
                out,
                fps=fps,
                width=width,
                height=height,
                beds=SoundBeds(music=music, ambience=ambience),
                burn_subtitles=burn,
            )
            log.info(
                "episode %s mixed: %.1f LUFS, true peak %.1f dBTP, %d cue(s)",
                episode_id,
                mix.lufs,
                mix.true_peak_dbtp,
                len(mix.cues),
            )
            key = episode_key(episode_id)
            stored = self.store.put_file(
                key, out, content_type="video/mp4", metadata={"episode": episode_id}
            )
            subtitles = []
            for fmt, text in (("vtt", to_vtt(mix.cues)), ("srt", to_srt(mix.cues))):
                path = Path(tmp) / f"episode.{fmt}"
                path.write_text(text, encoding="utf-8")
                subtitles.append(self.store.put_file(subtitles_key(episode_id, fmt), path))
        with self.sessions.begin() as s:
            ep = s.get(Episode, episode_id)
            assert ep is not None
            existing = s.scalar(select(Artifact).where(Artifact.key == key))
            if existing is None:
                s.add(
                    Artifact(
                        episode_id=episode_id,
                        kind="episode",
                        key=key,
                        size=stored.size,
                        sha256=stored.sha256,
                        content_type=stored.content_type,
                    )
                )
            else:
                existing.size, existing.sha256 = stored.size, stored.sha256
            for sub in subtitles:
                row = s.scalar(select(Artifact).where(Artifact.key == sub.key))
                if row is None:
                    s.add(
                        Artifact(
                            episode_id=episode_id,
                            kind="subtitles",
                            key=sub.key,
                            size=sub.size,
                            sha256=sub.sha256,
                            content_type=sub.content_type,
                        )
                    )
                else:
                    row.size, row.sha256 = sub.size, sub.sha256
            ep.options = {**(ep.options or {}), "mix": _json_safe(mix.to_json(fps))}
            s.add(
                Upload(
                    key=key,
                    size=stored.size,
                    seconds=stored.seconds,
                    bytes_per_s=stored.bytes_per_s,
                    worker_id=self.engine_id,
                    episode_id=episode_id,
                    beat_index=None,
                )
            )
            ep.output_key = key
            ep.error = None
            ep.finished_at = time.time()
            if ep.state == EpisodeState.COMPOSING:
                transition(s, ep, EpisodeState.COMPLETED, f"composed {len(clips)} beats")
        log.info("episode %s composed: %s", episode_id, key)
        return key
