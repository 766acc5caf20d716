"""A local stand-in for the Gemini API's Veo calls, for tests (stdlib http.server).

It implements the calls the Veo backend makes, with the real API's shapes:

- `POST /v1beta/models/{model}:predictLongRunning` -> `{"name": "models/{model}/operations/{id}"}`
- `GET /v1beta/models/{model}/operations/{id}` -> `{"done": false}` until ready, then the
  operation with `response.generateVideoResponse.generatedSamples[0].video.uri`
- `GET /v1beta/models/{model}` -> the model's description (models.get; `storyworld doctor`
  uses it to learn that the key is accepted without starting a generation)
- `GET /v1beta/files/{id}:download?alt=media` -> a redirect to a second server (another
  origin, like Google's storage) that serves the MP4 bytes

The model name picks the scenario: `veo-ok`, `veo-slow` (done after `slow_polls` polls),
`veo-quota` (429 RESOURCE_EXHAUSTED), `veo-retired` (404 NOT_FOUND), `veo-filtered` (done
with raiMediaFilteredReasons), `veo-never` (never done), `veo-op-quota` (the operation
ends with error code 8). Requests must carry the key in `x-goog-api-key`, never in the URL.

Run by hand: `python tests/veo_server.py` prints its base URL and serves until Ctrl-C.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any
from urllib.parse import urlsplit

API_KEY = "test-gemini-key-5f1c9a"
RETIRED_MESSAGE = (
    "models/veo-retired is not found for API version v1beta, or is not supported for "
    "predictLongRunning. Call ListModels to see the list of available models."
)
FILTER_REASON = (
    "Unable to generate videos because the prompt could violate our usage guidelines. "
    "Support code: 17301594"
)


def make_mp4(seconds: float, fps: int = 24, size: tuple[int, int] = (64, 36)) -> bytes:
    """A small H.264 MP4: a colour ramp, `seconds` long at `fps`."""
    import av
    import numpy as np

    width, height = size
    buffer = BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(max(1, round(seconds * fps))):
            frame = np.full((height, width, 3), (i * 7) % 256, dtype=np.uint8)
            frame[:, : width // 2, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


@dataclass
class Operation:
    model: str
    body: dict[str, Any]
    polls: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any = None


@dataclass
class VeoState:
    slow_polls: int = 3
    fps: int = 24
    operations: dict[str, Operation] = field(default_factory=dict)
    videos: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1))


def _handler(state: VeoState, server: VeoTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _record(self, body: Any = None) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append(Recorded(self.command, self.path, headers, body))

        def _json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, status: str, message: str, **headers: str) -> None:
            self._json(
                code, {"error": {"code": code, "message": message, "status": status}}, headers
            )

        def _authorised(self) -> bool:
            if "key=" in (urlsplit(self.path).query or ""):
                self._error(400, "INVALID_ARGUMENT", "the API key belongs in a header")
                return False
            if self.headers.get("x-goog-api-key") != API_KEY:
                self._error(403, "PERMISSION_DENIED", "API key not valid.")
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = None
            self._record(body)
            path = urlsplit(self.path).path
            if not (path.startswith("/v1beta/models/") and path.endswith(":predictLongRunning")):
                return self._error(404, "NOT_FOUND", f"no route {path}")
            if not self._authorised():
                return None
            model = path.removeprefix("/v1beta/models/").removesuffix(":predictLongRunning")
            if not isinstance(body, dict) or not body.get("instances"):
                return self._error(400, "INVALID_ARGUMENT", "instances is required")
            if model == "veo-retired":
                return self._error(404, "NOT_FOUND", RETIRED_MESSAGE)
            if model == "veo-quota":
                return self._error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "You exceeded your current quota, please check your plan and billing.",
                    **{"Retry-After": "17"},
                )
            with state.lock:
                op_id = f"op{next(state.ids)}"
                state.operations[op_id] = Operation(model=model, body=body)
            return self._json(200, {"name": f"models/{model}/operations/{op_id}"})

        def do_GET(self) -> None:
            self._record()
            path = urlsplit(self.path).path
            if path.startswith("/v1beta/files/"):
                if not self._authorised():
                    return None
                video_id = path.removeprefix("/v1beta/files/").removesuffix(":download")
                # Like the real API: the bytes live on another origin.
                self.send_response(302)
                self.send_header("Location", f"{server.blob_url}/blob/{video_id}.mp4")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if path.startswith("/v1beta/models/") and "/operations/" in path:
                if not self._authorised():
                    return None
                return self._poll(path.rsplit("/", 1)[1])
            if path.startswith("/v1beta/models/"):  # models.get: what `storyworld doctor` asks
                if not self._authorised():
                    return None
                model = path.removeprefix("/v1beta/models/")
                if model == "veo-retired":
                    return self._error(404, "NOT_FOUND", RETIRED_MESSAGE)
                return self._json(200, {"name": f"models/{model}", "displayName": model})
            return self._error(404, "NOT_FOUND", f"no route {path}")

        def _poll(self, op_id: str) -> None:
            with state.lock:
                op = state.operations.get(op_id)
                if op is not None:
                    op.polls += 1
            if op is None:
                return self._error(404, "NOT_FOUND", f"operation {op_id} not found")
            name = f"models/{op.model}/operations/{op_id}"
            if op.model == "veo-never" or (op.model == "veo-slow" and op.polls < state.slow_polls):
                return self._json(200, {"name": name, "done": False})
            if op.model == "veo-op-quota":
                return self._json(
                    200,
                    {"name": name, "done": True, "error": {"code": 8, "message": "quota"}},
                )
            if op.model == "veo-filtered":
                return self._json(
                    200,
                    {
                        "name": name,
                        "done": True,
                        "response": {
                            "@type": "type.googleapis.com/google.ai.generativelanguage."
                            "v1beta.PredictLongRunningResponse",
                            "generateVideoResponse": {
                                "raiMediaFilteredCount": 1,
                                "raiMediaFilteredReasons": [FILTER_REASON],
                            },
                        },
                    },
                )
            params = op.body.get("parameters", {})
            seconds = float(params.get("durationSeconds", 8))
            size = (36, 64) if params.get("aspectRatio") == "9:16" else (64, 36)
            with state.lock:
                if op_id not in state.videos:
                    state.videos[op_id] = make_mp4(seconds, state.fps, size)
            uri = f"{server.base_url}/files/{op_id}:download?alt=media"
            return self._json(
                200,
                {
                    "name": name,
                    "done": True,
                    "response": {
                        "@type": "type.googleapis.com/google.ai.generativelanguage."
                        "v1beta.PredictLongRunningResponse",
                        "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]},
                    },
                },
            )

    return Handler


def _blob_handler(state: VeoState) -> type[BaseHTTPRequestHandler]:
    class BlobHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append(Recorded("GET", "blob:" + self.path, headers))
                data = state.videos.get(self.path.rsplit("/", 1)[-1].removesuffix(".mp4"))
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return BlobHandler


class VeoTestServer:
    """Two loopback servers on ephemeral ports: the API and the video storage."""

    def __init__(self, slow_polls: int = 3) -> None:
        self.state = VeoState(slow_polls=slow_polls)
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state, self))
        self._blobs = ThreadingHTTPServer(("127.0.0.1", 0), _blob_handler(self.state))
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        """What VEO_API_BASE should be."""
        return f"http://127.0.0.1:{self._api.server_address[1]}/v1beta"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self._blobs.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    def start(self) -> VeoTestServer:
        for srv in (self._api, self._blobs):
            thread = threading.Thread(target=srv.serve_forever, daemon=True, name="veo-test")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for srv in (self._api, self._blobs):
            srv.shutdown()
            srv.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> VeoTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    import time

    with VeoTestServer() as srv:
        print(f"VEO_API_BASE={srv.base_url} GEMINI_API_KEY={API_KEY}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
