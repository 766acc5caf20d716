"""The short chaos run (bench/chaos.py): a few hundred jobs through real worker processes
and a private redis-server, with every fault of the full run; nothing lost, nothing needing
an operator, the poison jobs dead-lettered."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


@pytest.mark.slow
def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    import chaos

    out = chaos.main(
        ["--jobs", "240", "--workers", "3", "--pause", "2", "--sleep", "0.2",
         "--out", str(tmp_path / "chaos.md")]
    )  # fmt: skip
    assert out["applied"] == out["jobs"] == 240
    assert out["lost"] == 0 and out["needs_operator"] == 0
    assert out["poison_dead_lettered"] == ["poison-oversized", "poison-unreadable"]
    assert out["duplicate_results_ignored"] >= 2 and out["garbage_ignored"] == 3
    sigkill = next(v for k, v in out["recovery_s"].items() if k.startswith("worker SIGKILL"))
    assert sigkill < 20  # lease 3 s here: the killed worker's job ran again
