"""The protocol package: every message crossing a process boundary, with its limits."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from storyworld.protocol import (
    JOB_KINDS,
    DeadLetterEntry,
    EventKind,
    Heartbeat,
    Job,
    JobBase,
    LeaseHolder,
    Message,
    ProtocolError,
    RenderSpec,
    Result,
    ResultStatus,
    StartedEvent,
    WakeReason,
    event_fields,
    job_kind,
    limits,
    parse_dead_letter,
    parse_job,
    parse_lease_holder,
    parse_result,
    parse_wake,
    vram_classes_arg,
    wake_message,
)


def job_dict(**spec: object) -> dict[str, object]:
    return {
        "v": 1,
        "type": "render",
        "job_id": "ep-b000-a1",
        "episode_id": "ep",
        "beat_id": "b0",
        "beat_index": 0,
        "attempt": 1,
        "backend": "animatic",
        "spec": {"text": "a beat", "duration_s": 1, "width": 64, "height": 48, "fps": 8, **spec},
    }


def test_a_job_written_before_kinds_existed_is_a_clip_job() -> None:
    job = parse_job(json.dumps(job_dict()))
    assert isinstance(job, Job) and job.kind == "clip"
    assert json.loads(job.to_json())["kind"] == "clip"


def test_an_unknown_job_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ProtocolError, match=r"job kind 'hologram' is unknown.*clip"):
        parse_job(json.dumps({**job_dict(), "kind": "hologram"}))


def test_a_new_job_kind_registers_once_and_parses_by_kind() -> None:
    class ChimeSpec(Message):
        note: str

    @job_kind
    class ChimeJob(JobBase):
        kind: Literal["chime"] = "chime"
        spec: ChimeSpec

    try:
        raw = {**job_dict(), "kind": "chime", "spec": {"note": "A4"}}
        job = parse_job(json.dumps(raw))
        assert isinstance(job, ChimeJob) and job.spec.note == "A4"
        with pytest.raises(ValueError, match="not a new name"):
            job_kind(ChimeJob)
    finally:
        JOB_KINDS.pop("chime", None)


def test_a_5_mb_text_is_refused_before_it_is_parsed() -> None:
    raw = json.dumps(job_dict(text="x" * 5_000_000))
    with pytest.raises(ProtocolError, match="over the limit of 65,536"):
        parse_job(raw)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("text", "x" * (limits.MAX_TEXT_CHARS + 1), "spec.text"),
        ("captions", ["c"] * (limits.MAX_CAPTIONS + 1), "spec.captions"),
        ("captions", ["c" * (limits.MAX_CAPTION_CHARS + 1)], "spec.captions.0"),
        ("negative_prompt", "n" * (limits.MAX_PROMPT_CHARS + 1), "spec.negative_prompt"),
        ("seed", 2**63, "spec.seed"),
        ("seed", -1, "spec.seed"),
        ("options", {"blob": "o" * limits.MAX_OPTIONS_BYTES}, "spec.options"),
    ],
)
def test_each_field_of_a_job_is_bounded(field: str, value: object, where: str) -> None:
    with pytest.raises(ProtocolError, match=f"job field {where}"):
        parse_job(json.dumps(job_dict(**{field: value})))


def test_the_largest_seed_is_accepted() -> None:
    assert parse_job(json.dumps(job_dict(seed=2**63 - 1))).spec.seed == 2**63 - 1


def test_a_job_over_the_size_limit_cannot_be_built_for_sending() -> None:
    spec = RenderSpec(
        # Within every field's limit in characters, but four bytes each in UTF-8.
        text="\U0001f30a" * limits.MAX_TEXT_CHARS,
        captions=["\U0001f30a" * limits.MAX_CAPTION_CHARS] * limits.MAX_CAPTIONS,
        duration_s=1,
        width=64,
        height=48,
        fps=8,
    )
    job = Job(**{**job_dict(), "spec": spec})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="over the limit"):
        job.to_json()


def test_a_long_error_in_a_result_is_cut_not_refused() -> None:
    r = Result(
        job_id="j",
        episode_id="e",
        beat_id="b",
        attempt=1,
        status=ResultStatus.FAILED,
        worker_id="w",
        backend="animatic",
        error="e" * 100_000,
    )
    back = parse_result(r.to_json())
    assert back.error is not None and len(back.error) == limits.MAX_ERROR_CHARS
    with pytest.raises(ProtocolError, match="over the limit"):
        parse_result('{"v": 1, "pad": "' + "p" * limits.MAX_RESULT_BYTES + '"}')


def test_wake_messages_round_trip_and_results_are_not_wakes() -> None:
    raw = wake_message(WakeReason.PAUSED)
    wake = parse_wake(raw)
    assert wake is not None and wake.changes_pause and wake.reason == "paused"
    assert not parse_wake(wake_message(WakeReason.CREATED)).changes_pause  # type: ignore[union-attr]
    assert parse_wake('{"v": 1, "type": "result", "job_id": "x"}') is None


def test_lease_holder_round_trips_and_tolerates_an_old_value() -> None:
    holder = LeaseHolder.here("engine-a")
    back = parse_lease_holder(holder.to_token())
    assert back == holder and "nonce" not in back.public()
    assert parse_lease_holder(None) is None
    assert parse_lease_holder("garbage").engine == "unknown"  # type: ignore[union-attr]


def test_dead_letter_entries_round_trip_and_corrupt_ones_say_so() -> None:
    entry = DeadLetterEntry(job_id="j", reason="r" * 10_000, payload="{}", worker="w")
    back = parse_dead_letter(entry.to_json())
    assert back.job_id == "j" and len(back.reason) == limits.MAX_ERROR_CHARS
    assert parse_dead_letter(b"\xff not json").reason == "corrupt dead-letter entry"


def test_heartbeat_fields_are_text_and_read_back_leniently() -> None:
    fields = Heartbeat(id="w1", done=3, state="busy", job="j1").to_fields()  # type: ignore[arg-type]
    assert all(isinstance(v, str) for v in fields.values()) and fields["done"] == "3"
    back = Heartbeat.from_fields({**fields, "seen": "123", "unknown": "x"})
    assert back.seen == "123" and back.job == "j1"


def test_events_carry_their_payload_type() -> None:
    f = event_fields(EventKind.STARTED, StartedEvent(job_id="j", worker="w"))
    assert f["type"] == "started" and json.loads(f["data"])["worker"] == "w"
    with pytest.raises(TypeError):
        event_fields(EventKind.DEAD, StartedEvent(job_id="j", worker="w"))


def test_vram_classes_travel_as_one_argument() -> None:
    assert vram_classes_arg().split(",")[0] == "8"
