"""The film flow through the HTTP API: a cast in the create body, approve, re-roll."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_film_flow import SCRIPT, write_cast

from storyworld.api.app import create_app


@pytest.fixture
def client(runtime):  # type: ignore[no-untyped-def]
    with TestClient(create_app(runtime)) as c:
        yield c


def _until(client, episode_id, state):  # type: ignore[no-untyped-def]
    from test_e2e_local import wait_for

    def check():  # type: ignore[no-untyped-def]
        d = client.get(f"/v1/episodes/{episode_id}").json()
        assert d["state"] != "failed", d["error"]
        return d if d["state"] == state else None

    return wait_for(check, timeout=60)


def test_approve_and_reroll_through_the_api(client, runtime, background, tmp_path) -> None:
    cast = write_cast(tmp_path)
    r = client.post(
        "/v1/episodes",
        json={"script": SCRIPT, "cast": str(cast), "approve": True, "candidates": 2, "fps": 8},
    )
    assert r.status_code == 201, r.text
    ep = r.json()["id"]
    assert [b["characters"] for b in r.json()["beats"]] == [["Mara"], [], ["Mara", "Tom"]]
    background.engine(runtime)
    background.worker(runtime)

    waiting = _until(client, ep, "awaiting_approval")
    keyframe = client.get(f"/v1/episodes/{ep}/beats/1/keyframe")
    assert keyframe.status_code == 200 and keyframe.content.startswith(b"\x89PNG")
    before = waiting["beats"][1]["keyframe"]

    r = client.post(f"/v1/episodes/{ep}/beats/1/reroll", json={"text": "A boat sinks."})
    assert r.status_code == 200, r.text
    again = _until(client, ep, "awaiting_approval")
    assert [len(b["jobs"]) for b in again["beats"]] == [1, 2, 1]
    assert again["beats"][1]["keyframe"] != before

    r = client.post(f"/v1/episodes/{ep}/approve", json={"beat": 0})
    assert r.status_code == 200 and r.json()["state"] == "awaiting_approval"
    r = client.post(f"/v1/episodes/{ep}/approve")
    assert r.status_code == 200, r.text
    done = _until(client, ep, "completed")
    assert all(b["approved"] and b["clip_key"] for b in done["beats"])
    assert client.get(f"/v1/episodes/{ep}/video").status_code == 200


def test_cast_errors_are_422_with_file_and_line(client, tmp_path) -> None:
    cast = write_cast(tmp_path, '[characters.Mara]\nreferences = ["refs/none.png"]\n')
    r = client.post("/v1/episodes", json={"script": SCRIPT, "cast": str(cast)})
    assert r.status_code == 422
    assert f"{cast}, line 2: " in r.json()["error"] and "does not exist" in r.json()["error"]
    assert client.get("/v1/episodes").json() == []


def test_approving_an_episode_without_keyframes_is_409(client) -> None:
    ep = client.post("/v1/episodes", json={"script": "[1s] A door opens.\n"}).json()["id"]
    r = client.post(f"/v1/episodes/{ep}/approve")
    assert r.status_code == 409 and "without keyframes" in r.json()["error"]
