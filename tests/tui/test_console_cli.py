"""`storyworld-tui` arguments and friendly errors on bad settings (no traceback, no secret)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storyworld.tui.cli import EXAMPLE, build_parser, main


def test_arguments() -> None:
    args = build_parser().parse_args(["--read-only", "--refresh", "600", "--home", "/tmp/x"])
    assert args.read_only and args.refresh == 600 and args.home == "/tmp/x"
    assert EXAMPLE.is_file()


def test_refresh_too_short_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--refresh", "1"]) == 2
    assert "--refresh" in capsys.readouterr().err


def test_bad_settings_give_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "http://admin:hunter2-secret@redis.example:6379")
    assert main(["--env-file", str(tmp_path / "none.env"), "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("storyworld-tui: REDIS_URL must start with")
    assert "hunter2-secret" not in err and "Traceback" not in err


def test_bad_number_in_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / ".env"
    env.write_text("LEASE_SECONDS=soon\n")
    assert main(["--env-file", str(env), "--home", str(tmp_path)]) == 2
    assert "LEASE_SECONDS must be a number" in capsys.readouterr().err
