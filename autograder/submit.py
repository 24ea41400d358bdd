"""The workshop service's client: hand in a notebook (and its CSV), wait, print the verdict.

Standard library only, nothing imported from the package: the cell ``autograder release``
adds to student notebooks embeds this module on Colab, where nothing is installed, and calls
:func:`hand_in` with the notebook's content (``autograder submit`` reads the files first).
The contract is DESIGN.md's *The workshop service*; docs/architecture.md names what is read.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

MiB = 1024 * 1024
#: The service's default body limit (issue 14): a larger upload is refused before it is sent.
MAX_UPLOAD_BYTES = 20 * MiB
#: No answer of the service comes near this; a larger one is not the service's.
MAX_ANSWER_BYTES = 1 * MiB
TOKEN_VARIABLE = "AUTOGRADER_TOKEN"
#: Answers of a proxy in front of a service that is down or restarting: tried again.
TRANSIENT_HTTP = (502, 503, 504)
WAITING = ("queued", "running")
#: What a refusal says when the server's answer carries no sentence of its own.
FALLBACK = {401: "unknown token", 413: "the files are too large", 429: "too many submissions"}
INTERRUPTED = 130  # the shell's status for Ctrl-C
Upload = tuple[str, bytes]  # a file's base name and content


@dataclass(frozen=True)
class Pace:
    """How fast and how long: a request that met a network failure is tried again after
    ``first`` seconds, ``factor`` times longer each time up to ``cap``, and given up ``total``
    seconds after its first failure; the status is asked every ``poll`` seconds."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    total: float = 120.0
    poll: float = 2.0
    timeout: float = 30.0  # seconds a request may stay silent
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic


PACE = Pace()  # what a hand-in uses unless told otherwise


class SubmitError(Exception):
    """A hand-in that cannot go on, saying what to do. ``code`` is the exit status (1: refused
    or unreachable, 2: usage), ``status`` a refusal's HTTP status, ``retry_after`` its
    Retry-After in seconds; a ``transient`` one (a network failure) is worth trying again."""

    def __init__(
        self, message: str, code: int = 1, *, status: int | None = None,
        retry_after: float | None = None, transient: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.code, self.status = code, status
        self.retry_after, self.transient = retry_after, transient


def clean(value: object, limit: int = 300) -> str:
    """Text from the server as plain text for a terminal: control characters (escapes,
    carriage returns, line breaks, bidi overrides) shown as ``\\xNN``, at most ``limit``."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    return f"{s} s" if s < 60 else f"{round(s / 60)} min" if s < 5400 else f"{s / 3600:.1f} h"


def check_uploads(uploads: Sequence[Upload], *, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """Refuse (SubmitError, code 2) what the service would: no file, an empty one, two of the
    same name, over ``max_bytes`` in all, a first file or ``.ipynb`` that is not a notebook."""
    if not uploads:
        raise SubmitError("nothing to submit: name the notebook", 2)
    limit, total, seen = f"{max_bytes / MiB:g} MiB", 0, set()
    for index, (name, data) in enumerate(uploads):
        shown, total = clean(name), total + len(data)
        if name in seen:
            raise SubmitError(f"two files are named {shown}; the service keeps one per name", 2)
        seen.add(name)
        if total > max_bytes:
            raise SubmitError(
                f"{shown} brings the upload over the {limit} the service accepts; clear the "
                "notebook's outputs (Edit > Clear all outputs), save it and submit again",
                2,
            )
        if not data:
            raise SubmitError(f"{shown} is empty; save it (File > Save) and submit again", 2)
        if index == 0 or name.lower().endswith(".ipynb"):
            try:  # (UnicodeDecodeError is a ValueError; AttributeError: JSON but no object)
                cells = json.loads(data.decode("utf-8-sig")).get("cells")
                problem = "" if isinstance(cells, list) else "JSON without cells"
            except (ValueError, RecursionError, AttributeError) as exc:
                problem = "JSON without cells" if isinstance(exc, AttributeError) else "not JSON"
            if problem:
                raise SubmitError(
                    f"{shown} is not a notebook ({problem}); open it in Jupyter or Colab, save "
                    "it as .ipynb (File > Download > .ipynb on Colab) and submit that file",
                    2,
                )


def multipart(assignment: str, uploads: Sequence[Upload]) -> tuple[bytes, str]:
    """Body and Content-Type of the upload (RFC 7578): ``assignment``, a ``files`` part each."""
    boundary = "autograder-" + uuid.uuid4().hex  # 122 random bits: in no file
    parts = [(b'name="assignment"', assignment.encode())]
    for name, data in uploads:
        # As browsers do (HTML's form encoding): quotes and line breaks escaped in the name.
        quoted = name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        types = {".ipynb": "application/x-ipynb+json", ".csv": "text/csv"}
        kind = types.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
        parts.append((f'name="files"; filename="{quoted}"\r\nContent-Type: {kind}'.encode(), data))
    body = b"".join(
        b"--%s\r\nContent-Disposition: form-data; %s\r\n\r\n%s\r\n" % (boundary.encode(), h, d)
        for h, d in parts
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def tokens_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/autograder/tokens.json`` (default ``~/.config/...``)."""
    base = (os.environ if environ is None else environ).get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "autograder" / "tokens.json"


def load_tokens(path: Path) -> dict[str, str]:
    """The saved tokens, server URL -> token; empty when the file is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    items = data.items() if isinstance(data, dict) else ()
    return {k: v for k, v in items if isinstance(k, str) and isinstance(v, str)}


def save_token(path: Path, server: str, token: str) -> None:
    """Remember ``token`` for ``server``: the file replaced atomically, 0600 in a 0700 folder."""
    tokens = load_tokens(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tokens-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump({**tokens, server: token}, file, indent=2, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def find_token(
    given: str | None, server: str, environ: Mapping[str, str], store: Path, ask: Any
) -> tuple[str, str]:
    """The token and where it came from (``option``, ``environment``, ``file``, ``prompt``):
    ``given``, else ``$AUTOGRADER_TOKEN``, else saved in ``store``, else asked with ``ask``."""
    found, source = given, "option"
    if not found:
        found, source = environ.get(TOKEN_VARIABLE), "environment"
    if not found:
        found, source = load_tokens(store).get(server), "file"
    if not found and ask is not None:
        found, source = ask(f"Personal token for {server} (typing is hidden): "), "prompt"
    found = (found or "").strip()
    if not found:
        why = f"pass --token T, set {TOKEN_VARIABLE}, or run this once in a terminal, which asks"
        raise SubmitError(f"no token for {server}: {why} and saves it in {store}", 2)
    if not re.fullmatch(r"[\x21-\x7e]+", found):
        raise SubmitError("the token has spaces or characters a token never has; copy it again", 2)
    return found, source


def normalize_server(url: str) -> str:
    """``url`` as the service's base address (lower-case host, no trailing slash), checked."""
    parts = urllib.parse.urlsplit(url.strip())
    try:
        _ = parts.port  # raises when the port is not a number
        valid = parts.scheme.lower() in ("http", "https") and parts.hostname
    except ValueError:
        valid = False
    if not valid or parts.query or parts.fragment or parts.username is not None:
        example = "https://workshop.example.org or http://127.0.0.1:8000"
        raise SubmitError(f"--server {clean(url)!r} is not a web address such as {example}", 2)
    return urllib.parse.urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", "")
    )


class Client:
    """Requests with the participant's token: network failures and a busy proxy's answers are
    tried again as ``pace`` says (telling ``say``); a token not read from ``store`` is saved
    there once accepted; a refused one says how to replace it."""

    def __init__(
        self, server: str, token: str, *, source: str = "option", store: Path | None = None,
        pace: Pace = PACE, say: Callable[[str], None] = print,
    ) -> None:  # fmt: skip
        self.server, self.token, self.source, self.store = server, token, source, store
        self.pace, self.say = pace, say
        # No redirect handler: a redirect is an error, following it would send the token on.
        self._opener, r = urllib.request.OpenerDirector(), urllib.request
        for handler in (r.ProxyHandler, r.HTTPHandler, r.HTTPSHandler, r.HTTPErrorProcessor):
            self._opener.add_handler(handler())
        self._opener.add_handler(r.HTTPDefaultErrorHandler())

    def call(self, method: str, path: str, body: bytes | None = None, ctype: str = "") -> Any:
        """The JSON of a 2xx answer; SubmitError for a refusal, an answer that is not the
        service's, or a failure that lasts longer than ``pace.total``."""
        pace, first_failure, delay = self.pace, None, self.pace.first
        # One key for every try: a service that honours it queues an upload retried after a
        # lost answer once, instead of refusing it as too soon (429).
        extra = {"Content-Type": ctype, "Idempotency-Key": uuid.uuid4().hex} if body else {}
        while True:
            try:
                answer = self._once(method, path, body, extra)
                break
            except SubmitError as exc:
                if not exc.transient:
                    raise
                now = pace.clock()
                first_failure = now if first_failure is None else first_failure
                later = exc.retry_after
                wait = delay if later is None else min(max(delay, later), pace.cap)
                if now + wait - first_failure > pace.total:
                    raise SubmitError(
                        f"gave up after {_duration(now - first_failure)}: {exc}; check the address"
                        f" {self.server}, your network, or ask whether the service is running"
                    ) from None
                self.say(f"{exc}, retrying in {wait:g} s")
                pace.sleep(wait)
                delay = min(delay * pace.factor, pace.cap)
        if self.store is not None and self.source != "file":
            try:
                save_token(self.store, self.server, self.token)
                self.source = "file"
            except OSError as exc:
                self.say(f"warning: the token could not be saved in {self.store} ({exc})")
                self.store = None
        return answer

    def _once(self, method: str, path: str, body: bytes | None, extra: dict[str, str]) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": "autograder-submit"}
        headers.update({"Accept": "application/json", **extra})
        request = urllib.request.Request(self.server + path, body, headers, method=method)
        try:
            with self._opener.open(request, timeout=self.pace.timeout) as answer:
                data = answer.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise self._refusal(method, exc) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise SubmitError(
                    f"no secure connection to {self.server} ({clean(exc.reason, 120)}); check "
                    "the address (https:// or http://?) with the instructor"
                ) from None
            raise SubmitError(_network_failure(exc.reason), transient=True) from None
        except (OSError, http.client.HTTPException) as exc:
            raise SubmitError(_network_failure(exc), transient=True) from None
        if len(data) > MAX_ANSWER_BYTES:
            raise self.not_the_service(f"its answer is larger than {MAX_ANSWER_BYTES // MiB} MiB")
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            raise self.not_the_service("its answer is not JSON") from None

    def not_the_service(self, what: str) -> SubmitError:
        """The error for an answer the service never gives."""
        return SubmitError(f"{what}: is {self.server} the address of the workshop service?")

    def _refusal(self, method: str, exc: urllib.error.HTTPError) -> Exception:
        status, headers = exc.code, exc.headers
        if status in TRANSIENT_HTTP:
            return SubmitError(f"server busy or restarting (HTTP {status})", transient=True)
        if 300 <= status < 400:
            where = clean(headers.get("Location", "another address"), 200)
            return SubmitError(f"the server redirects to {where}: pass its new address as --server")
        if status == 429 and method == "GET":  # asking too often: slow down, keep waiting
            later = retry_after(headers)
            return SubmitError(
                "the server asks to wait (HTTP 429)", retry_after=later, transient=True
            )
        sentence = None
        try:
            document = json.loads(exc.read(MAX_ANSWER_BYTES + 1).decode("utf-8"))
            if isinstance(document, dict) and isinstance(document.get("error"), str):
                sentence = document["error"].strip()
        except (OSError, ValueError, RecursionError, http.client.HTTPException):
            pass
        text = clean(sentence) if sentence else FALLBACK.get(status, "it could not handle it")
        text = f"refused by the server (HTTP {status}): {text}"
        if status == 401:
            places = {"file": f"saved in {self.store}", "environment": f"in {TOKEN_VARIABLE}"}
            text += f"\nthe token {places.get(self.source, 'given')} was revoked or is wrong: ask"
            text += (
                " the instructor for yours and run again with --token T (replaces the saved one)"
            )
        return SubmitError(text, status=status, retry_after=retry_after(headers))


def _network_failure(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "server not reachable (connection refused)"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "server not answering (timed out)"
    if isinstance(reason, socket.gaierror):
        return "server not reachable (unknown host name)"
    if isinstance(reason, ConnectionError | http.client.HTTPException):
        return "connection to the server lost"
    return f"server not reachable ({clean(reason, 120)})"


def retry_after(headers: Message | None) -> float | None:
    """Seconds from now that a ``Retry-After`` header names (a number or an HTTP date), or
    None when it is missing or not believable (negative, beyond a year)."""
    value = str((headers.get("Retry-After") if headers is not None else None) or "").strip()
    try:
        number = value.isdigit() and len(value) < 12
        seconds = int(value) if number else parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return seconds if 0 <= seconds <= 366 * 86400 else None


class _Display:
    """Progress on ``stream``: on a terminal one line rewritten in place, otherwise a plain
    line when something changes (and once a minute while nothing does)."""

    def __init__(self, stream: IO[str], clock: Callable[[], float]) -> None:
        self.stream, self.clock, self.drawn, self.key, self.since = stream, clock, False, None, 0.0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def show(self, key: Any, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
            self.stream.flush()
            self.drawn = True
        elif key != self.key or self.clock() - self.since >= 60:
            self.say(line)
            self.key, self.since = key, self.clock()

    def say(self, line: str) -> None:
        self.clear()
        print(line, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) < 1e15:
        return None
    return float(value)


def _points(value: float | None) -> str:
    return "?" if value is None else f"{round(value, 2):g}"


def _link(server: str, value: object) -> str | None:
    """``value`` (an address the server gave, maybe relative) made absolute from ``server``."""
    if not isinstance(value, str) or not value.strip():
        return None
    link = urllib.parse.urljoin(server + "/", value.strip())
    return clean(link, 500) if urllib.parse.urlsplit(link).scheme in ("http", "https") else None


def report(result: Mapping[str, Any], server: str, out: IO[str]) -> None:
    """Print a verdict: status and score, the server's message, late or not, each item that
    lost points with its reason, the feedback page's address."""
    score, most = _number(result.get("score")), _number(result.get("max_score"))
    points = f"{_points(score)} / {_points(most)} points" if most is not None else "no score"
    print(f"{clean(result.get('status'), 40)}: {points}", file=out)
    if result.get("message"):
        print(f"  {clean(result['message'])}", file=out)
    if result.get("late"):
        print("late: handed in after the deadline, and marked late", file=out)
    items = result.get("items")
    lost = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            got, worth = _number(item.get("score")), _number(item.get("max_score"))
            if item.get("passed") is False or (got or 0) < (worth or 0):
                lost.append((item, got, worth))
    if lost:
        print("items that lost points:", file=out)
    for item, got, worth in lost:
        why = f": {clean(item['message'])}" if item.get("message") else ""
        print(f"  {clean(item.get('id'), 80)}: {_points(got)} / {_points(worth)}{why}", file=out)
    link = _link(server, result.get("feedback_url"))
    if link:
        print(f"feedback: {link}", file=out)


def hand_in(
    uploads: Sequence[Upload], *, server: str, assignment: str | Callable[[Any], str],
    token: str | None = None, wait: bool = True, ask: Callable[[str], str] | None = None,
    out: IO[str] | None = None, err: IO[str] | None = None, pace: Pace | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:  # fmt: skip
    """Hand in ``uploads`` (the notebook first) to ``assignment`` (a name, or a function that
    picks one from the service's list) and, if ``wait``, print the verdict on ``out``: progress
    and errors on ``err``, the token (:func:`find_token`) nowhere. The exit status: 0 a verdict
    or queued without waiting, 1 refused or unreachable, 2 usage, 130 Ctrl-C while waiting."""
    out, err, pace = out or sys.stdout, err or sys.stderr, pace or PACE
    environ = os.environ if environ is None else environ
    display = _Display(err, pace.clock)
    try:
        check_uploads(uploads)
        server = normalize_server(server)
        host = urllib.parse.urlsplit(server).hostname
        if server.startswith("http:") and host not in ("localhost", "127.0.0.1", "::1"):
            display.say(f"warning: {server} is not https: the token and files travel unencrypted")
        store = tokens_path(environ)
        token, source = find_token(token, server, environ, store, ask)
        client = Client(server, token, source=source, store=store, pace=pace, say=display.say)
        if callable(assignment):
            assignment = assignment(client.call("GET", "/api/assignments"))
            display.say(f"assignment: {clean(assignment)}")
        queued = client.call("POST", "/api/submissions", *multipart(assignment, uploads))
        if not isinstance(queued, dict) or not isinstance(queued.get("id"), str | int):
            raise client.not_the_service("its answer to the upload has no submission id")
        ident = str(queued["id"])
        path = "/api/submissions/" + urllib.parse.quote(ident, safe="")
        status_url = _link(server, queued.get("url")) or server + path
        if not wait:
            position = _number(queued.get("position"))
            where = f", position {position:g} in the queue" if position is not None else ""
            print(f"queued: submission {clean(ident)}{where}\nstatus: {status_url}", file=out)
            return 0
        display.say(f"submitted {', '.join(clean(n) for n, _ in uploads)}: {clean(ident)}")
        try:
            report(_wait(client, path, {"status": "queued", **queued}, display), server, out)
            return 0
        except KeyboardInterrupt:
            display.say(f"stopped waiting; submission {clean(ident)} is still graded: {status_url}")
            return INTERRUPTED
    except SubmitError as exc:
        display.clear()
        print(f"error: {exc}", file=err)
        if exc.status == 429:
            print(f"you can submit again {_when(exc.retry_after)}", file=err)
        return exc.code


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "later (the server did not say when)"
    at = time.localtime(time.time() + seconds)
    clock = time.strftime("%H:%M" if time.localtime()[:3] == at[:3] else "%a %d %b %H:%M", at)
    return f"in {_duration(seconds)} (at {clock})"


def _wait(client: Client, path: str, result: dict[str, Any], display: _Display) -> dict[str, Any]:
    """Ask for the submission's status until it is a verdict, showing where it stands."""
    started = client.pace.clock()
    while True:
        status = result.get("status")
        if not isinstance(status, str):
            raise client.not_the_service("its answer has no status")
        if status not in WAITING:
            display.clear()
            return result
        position = _number(result.get("position"))
        where = f", position {position:g}" if status == "queued" and position is not None else ""
        minutes, seconds = divmod(int(client.pace.clock() - started), 60)
        display.show((status, position), f"{clean(status, 40)}{where} ({minutes}:{seconds:02d})")
        client.pace.sleep(client.pace.poll)
        answer = client.call("GET", path)
        result = answer if isinstance(answer, dict) else {}
