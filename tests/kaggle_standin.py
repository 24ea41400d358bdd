"""A stand-in for Kaggle's API on 127.0.0.1, to drive the real kaggle client in tests.

The client is pointed at it without patching anything:

* ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes the client (kaggle 2.x over kagglesdk) send every
  call as ``POST http://localhost/api/v1/<Service>/<Method>`` with a JSON body;
* ``HTTP_PROXY=http://127.0.0.1:<port>`` makes ``requests`` hand every ``http://`` request to
  the stand-in as a proxy, with the full address in the request line, so the stand-in can sit
  on any free loopback port instead of port 80.

It serves what ``download`` and ``submit`` need, the way Kaggle does: ``DownloadDataFiles``
redirects to a storage address that returns the competition's zip; ``StartSubmissionUpload``
returns a blob token and an upload address; a ``PUT`` there stores the bytes;
``CreateSubmission`` turns the token into a submission. ``IntrospectToken`` answers the
client's check of an access token. Every request is recorded, with its headers and body.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
import json
import threading
import zipfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

API = "/api/v1/"
COMPETITIONS = "competitions.CompetitionApiService"
OAUTH = "security.OAuthService"


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str  # the path of the requested address, without the query
    host: str  # the host of the requested address (the client asks for localhost)
    headers: dict[str, str]
    body: bytes

    @property
    def call(self) -> str:
        """``Service/Method`` for an API call, else the path."""
        return self.path[len(API) :] if self.path.startswith(API) else self.path

    def json(self) -> Any:
        return json.loads(self.body)


def digit_recognizer_files() -> dict[str, bytes]:
    """Three tiny files in the digit-recognizer format (two training rows, two test rows)."""
    pixels = ",".join(f"pixel{i}" for i in range(784))
    zeros = ",".join("0" for _ in range(784))
    return {
        "train.csv": f"label,{pixels}\n3,{zeros}\n7,{zeros}\n".encode(),
        "test.csv": f"{pixels}\n{zeros}\n{zeros}\n".encode(),
        "sample_submission.csv": b"ImageId,Label\n1,0\n2,0\n",
    }


class KaggleStandIn:
    """A threaded HTTP server that answers like Kaggle; use it as a context manager.

    ``username``/``key`` (legacy API key, sent as HTTP Basic) and ``token`` (access token,
    sent as Bearer) are the credentials it accepts; any other, or none, gets 401.
    ``competitions`` maps a name to its files; an unknown name gets 404, a name in
    ``rules_not_accepted`` gets 403. ``fail`` maps a method name (``DownloadDataFiles``...), or
    ``upload`` for the upload address, to a status to answer with instead.
    """

    def __init__(
        self,
        *,
        username: str = "alice",
        key: str = "key-of-alice",
        token: str = "KGAT_token-of-alice",
        competitions: dict[str, dict[str, bytes]] | None = None,
        rules_not_accepted: tuple[str, ...] = (),
        fail: dict[str, int] | None = None,
    ) -> None:
        self.username = username
        self.key = key
        self.token = token
        self.competitions = (
            competitions
            if competitions is not None
            else {"digit-recognizer": digit_recognizer_files()}
        )
        self.rules_not_accepted = rules_not_accepted
        self.fail = dict(fail or {})
        self.requests: list[Recorded] = []
        self.uploads: dict[str, bytes] = {}
        self.submissions: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def proxy(self) -> str:
        """The value for HTTP_PROXY that routes the client here."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def calls(self) -> list[str]:
        """``METHOD call`` for every request so far, in order."""
        return [f"{r.method} {r.call}" for r in self.requests]

    def __enter__(self) -> KaggleStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # --- answering ---------------------------------------------------------------------------

    def answer(self, request: Recorded) -> tuple[int, dict[str, str], bytes]:
        """The status, headers and body for ``request``."""
        with self._lock:
            self.requests.append(request)
        if request.path.startswith(API):
            service, _, method = request.call.partition("/")
            if request.method != "POST":
                return _error(HTTPStatus.METHOD_NOT_ALLOWED, "API calls are POSTs")
            if method in self.fail:
                status = HTTPStatus(self.fail[method])
                return _error(status, status.phrase, retry_after="7")
            if (service, method) == (OAUTH, "IntrospectToken"):
                return self._introspect(request.json())
            if not self._signed_in(request.headers.get("authorization", "")):
                return _error(HTTPStatus.UNAUTHORIZED, "Unauthenticated")
            if service == COMPETITIONS:
                return self._competitions(method, request.json())
            return _error(HTTPStatus.NOT_FOUND, f"no such call {request.call}")
        if request.method == "GET" and request.path.startswith("/storage/"):
            name = request.path.removeprefix("/storage/").removesuffix(".zip")
            if name not in self.competitions:
                return _error(HTTPStatus.NOT_FOUND, "NoSuchKey")
            return 200, {"Content-Type": "application/zip"}, self._zip(name)
        if request.method == "PUT" and request.path.startswith("/upload/"):
            if "upload" in self.fail:
                return _error(HTTPStatus(self.fail["upload"]), "upload refused")
            with self._lock:
                self.uploads[request.path.removeprefix("/upload/")] = request.body
            return 200, {"Content-Type": "text/plain"}, b""
        return _error(HTTPStatus.NOT_FOUND, f"nothing at {request.path}")

    def _signed_in(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme == "Bearer":
            return value == self.token
        if scheme == "Basic":
            expected = base64.b64encode(f"{self.username}:{self.key}".encode()).decode()
            return value == expected
        return False

    def _introspect(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if body.get("token") == self.token:
            return _json({"active": True, "username": self.username})
        return _json({"active": False})

    def _competitions(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        name = body.get("competitionName", "")
        if name not in self.competitions:
            return _error(HTTPStatus.NOT_FOUND, "NotFound")
        if name in self.rules_not_accepted:
            return _error(HTTPStatus.FORBIDDEN, "You must accept this competition's rules")
        if method == "DownloadDataFiles":
            # Kaggle answers with a redirect to a signed storage address.
            location = f"http://localhost/storage/{name}.zip?X-Goog-Signature=stand-in"
            return 302, {"Location": location, "Content-Type": "text/plain"}, b""
        if method == "StartSubmissionUpload":
            token = f"blob-{next(self._ids)}"
            return _json({"token": token, "createUrl": f"http://localhost/upload/{token}"})
        if method == "CreateSubmission":
            token = body.get("blobFileTokens", "")
            if token not in self.uploads:
                return _error(HTTPStatus.BAD_REQUEST, f"unknown blob token {token!r}")
            ref = next(self._ids)
            with self._lock:
                self.submissions.append({**body, "ref": ref, "bytes": self.uploads[token]})
            return _json({"message": "Successfully submitted to Digit Recognizer", "ref": ref})
        return _error(HTTPStatus.NOT_FOUND, f"no such call {method}")

    def _zip(self, name: str) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file_name, data in self.competitions[name].items():
                archive.writestr(file_name, data)
        return buffer.getvalue()


def _json(payload: dict[str, Any], status: int = 200) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(
    status: HTTPStatus, message: str, retry_after: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    # Kaggle's error body; the client turns "message" into the text of its HTTPError.
    code, headers, body = _json({"code": int(status), "message": message}, int(status))
    if retry_after is not None and status == HTTPStatus.TOO_MANY_REQUESTS:
        headers["Retry-After"] = retry_after
    return code, headers, body


class _Handler(BaseHTTPRequestHandler):
    standin: KaggleStandIn

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        # Through a proxy the request line holds the full address: http://localhost/api/...
        address = urlsplit(self.path)
        request = Recorded(
            method=self.command,
            path=address.path,
            host=address.hostname or self.headers.get("Host", ""),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._body(),
        )
        status, headers, body = self.standin.answer(request)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest's output clean; the requests are recorded instead
