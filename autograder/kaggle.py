"""Kaggle competitions through the real ``kaggle`` client: download the data, submit a CSV.

``download_competition`` fetches and unzips a competition's files. ``submit`` checks the CSV
with :func:`autograder.csvcheck.check_csv` first and sends it only when it is valid, so a
broken file never uses up one of the day's submissions.

Credentials are the client's own, read when a function here runs: an API token
(``KAGGLE_API_TOKEN`` or ``~/.kaggle/access_token``), a legacy API key (``KAGGLE_USERNAME`` and
``KAGGLE_KEY``, or ``kaggle.json``) or a ``kaggle auth login`` sign-in. Every failure (no
credentials, offline, 401, 403, 404, 429...) is a :class:`~autograder.errors.KaggleError` whose
message says what to do.

The client is imported only when a function here runs, never with this module: importing
``kaggle`` signs in at once (printing a help text when there are no credentials, calling Kaggle
when there is an access token) and creates its configuration folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import KaggleError

SETTINGS_URL = "https://www.kaggle.com/settings/api"
COMPETITION_URL = "https://www.kaggle.com/competitions/{competition}"

#: Files the rest of the autograder reads from a competition's download; a download without
#: them is an error here rather than a KeyError later.
EXPECTED_FILES: dict[str, tuple[str, ...]] = {
    "digit-recognizer": ("train.csv", "test.csv", "sample_submission.csv"),
}

# A competition's name is the last part of its address. Checking it keeps '/' and '..' out of
# the archive path the client builds from it.
_COMPETITION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

_OFFLINE_DATA = "offline, 'autograder data prepare digits' writes the same files from built-in data"


@dataclasses.dataclass(frozen=True)
class SubmitResult:
    """A submission Kaggle accepted."""

    competition: str
    file: Path
    description: str  # the message sent with the file
    ref: int  # Kaggle's id of the submission (0 if Kaggle sent none)
    kaggle_message: str  # what Kaggle answered, e.g. "Successfully submitted to ..."
    check_summary: str  # the CSV checker's summary of the file

    @property
    def url(self) -> str:
        """The page that lists the competition's submissions and their scores."""
        return COMPETITION_URL.format(competition=self.competition) + "/submissions"


def download_competition(competition: str, dest: Path) -> dict[str, Path]:
    """Download and unzip the files of ``competition`` into ``dest``; return name -> path.

    Files already in ``dest`` with the same names are replaced. Raises :class:`KaggleError`
    (saying what to do) when the client is missing, there are no credentials, Kaggle cannot be
    reached or refuses, or the download lacks a file listed in :data:`EXPECTED_FILES`.
    """
    check_competition(competition)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KaggleError(
            f"cannot create the folder {dest} for the files of {competition} ({exc}): choose "
            "a folder you can write to"
        ) from exc
    action = f"download the files of {competition}"
    api = _signed_in_api(competition=competition, action=action, tail=_OFFLINE_DATA)
    # Unzip in a private folder inside dest, then move: only this download's files are
    # returned, and a failed download leaves the files already in dest as they were.
    with tempfile.TemporaryDirectory(prefix=".kaggle-download-", dir=dest) as staging:
        with _client_call(api, competition=competition, action=action, tail=_OFFLINE_DATA):
            try:
                api.competition_download_files(
                    competition, path=staging, force=True, quiet=True, unzip=True
                )
            except (ValueError, RuntimeError) as exc:  # a short or corrupt archive
                raise KaggleError(
                    f"the download of {competition} from Kaggle is damaged ({exc}); run the "
                    "command again"
                ) from exc
        files = _move_files(Path(staging), dest)
    if not files:
        raise KaggleError(f"Kaggle sent no files for {competition}; run the command again")
    missing = [name for name in EXPECTED_FILES.get(competition, ()) if name not in files]
    if missing:
        raise KaggleError(
            f"the download of {competition} lacks {', '.join(missing)} (it has "
            f"{', '.join(files)}): Kaggle may have changed the competition's files; check "
            f"{COMPETITION_URL.format(competition=competition)}/data"
        )
    return files


def submit(file: Path, *, competition: str, message: str) -> SubmitResult:
    """Check ``file`` with the CSV checker, then submit it to ``competition`` with ``message``.

    An invalid file is refused before anything is sent, with the checker's summary in the
    :class:`KaggleError`, so it does not use up one of the day's submissions. Kaggle's
    refusals and connection problems are :class:`KaggleError` too, saying what to do.
    """
    from .csvcheck import check_csv

    check_competition(competition)
    file = Path(file)
    if not file.is_file():
        raise KaggleError(f"{file} is not a file: give the path of the CSV file to submit")
    report = check_csv(file, competition=competition)
    if not report.valid:
        raise KaggleError(
            f"{file} was not submitted to {competition}: it breaks the competition's rules, "
            "and Kaggle would count it against today's submissions. Fix it and submit "
            f"again.\n{report.summary()}"
        )
    action = f"submit {file.name} to {competition}"
    tail = "the file is valid, so submit it again once this machine is online"
    api = _signed_in_api(competition=competition, action=action, tail=tail)
    with _client_call(api, competition=competition, action=action, tail=tail) as output:
        response = api.competition_submit(str(file), message, competition, quiet=True)
        if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            # The client prints why the upload failed (if it knows) instead of raising.
            detail = " ".join(output.getvalue().split()) or "Kaggle's storage refused the file"
            raise KaggleError(
                f"the upload of {file} to Kaggle failed ({detail}); nothing was submitted, so "
                "run the command again"
            )
    return SubmitResult(
        competition=competition,
        file=file,
        description=message,
        ref=int(response.ref or 0),
        kaggle_message=response.message,
        check_summary=report.summary(),
    )


def check_competition(competition: str) -> str:
    """Return ``competition`` if it looks like a Kaggle competition name, else raise."""
    if not _COMPETITION.match(competition):
        raise KaggleError(
            f"{competition!r} is not a Kaggle competition name: use the last part of the "
            f"competition's address, e.g. digit-recognizer for "
            f"{COMPETITION_URL.format(competition='digit-recognizer')}"
        )
    return competition


def credentials_help(config_file: str | os.PathLike[str] | None = None) -> str:
    """How to give the kaggle client credentials, naming the kaggle.json it reads."""
    kaggle_json = config_file or _config_dir() / "kaggle.json"
    return (
        "Set up one of these, then run the command again:\n"
        f'  - an API token: create one at {SETTINGS_URL} ("Generate New Token"), then\n'
        "    export KAGGLE_API_TOKEN=<token>, or save it in ~/.kaggle/access_token (chmod 600);\n"
        '  - a legacy API key: "Create Legacy API Key" on the same page downloads kaggle.json;\n'
        f"    save it as {kaggle_json} (chmod 600), or export\n"
        "    KAGGLE_USERNAME=<username> KAGGLE_KEY=<key>;\n"
        "  - a browser sign-in: run 'kaggle auth login' once on this machine."
    )


# --- the client --------------------------------------------------------------------------------


def _kaggle_api_class() -> Any:
    """The client's ``KaggleApi`` class, imported with its import-time sign-in silenced."""
    try:
        # kaggle/__init__.py signs in on import and prints a help text to stdout when there
        # are no credentials (it swallows the failure itself); ours says more, and says it once.
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in {"kaggle", "kagglesdk"}:
            raise
        raise KaggleError(
            "the kaggle client is not installed: run pip install 'workshop-autograder[kaggle]' "
            "(or pip install kaggle)"
        ) from exc
    except OSError as exc:  # the client creates its configuration folder on import
        raise KaggleError(
            f"the kaggle client cannot create its configuration folder ({exc}): set "
            "KAGGLE_CONFIG_DIR to a folder you can write to"
        ) from exc
    return KaggleApi


def _config_dir() -> Path:
    """The folder of kaggle.json, by the client's own rule, from the current environment."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    home = Path(os.path.expanduser("~"))
    legacy = home / ".kaggle"
    if sys.platform.startswith("linux") and not legacy.exists():
        return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"
    return legacy


def _new_api() -> Any:
    kaggle_api = _kaggle_api_class()
    api = kaggle_api()
    # The client fixes where kaggle.json is and which server to call (class attributes) when
    # it is first imported. Set them again from the environment of this call, so a long-lived
    # process (a notebook, the tests) follows changes to HOME, KAGGLE_CONFIG_DIR or
    # KAGGLE_API_ENVIRONMENT the way a fresh 'kaggle' command would.
    config_dir = _config_dir()
    api.config_dir = str(config_dir)
    api.config = str(config_dir / kaggle_api.config_file)
    args = [arg for arg in kaggle_api.args if arg != "--local"]
    if os.environ.get("KAGGLE_API_ENVIRONMENT") == "LOCALHOST":
        args.append("--local")
    api.args = args
    return api


def _signed_in_api(*, competition: str, action: str, tail: str) -> Any:
    """A client signed in with the credentials it finds; KaggleError says how to add them."""
    api = _new_api()
    output = io.StringIO()
    with _translated(api, competition=competition, action=action, tail=tail):
        try:
            with contextlib.redirect_stdout(output):
                api.authenticate()
        except SystemExit:
            # The client prints its own help and exits when it finds no usable credentials.
            raise KaggleError(_no_credentials_message(api)) from None
    _pass_on(output)
    return api


def _no_credentials_message(api: Any) -> str:
    from kagglesdk import get_access_token_from_env

    token, source = get_access_token_from_env()
    if token:
        where = "in KAGGLE_API_TOKEN" if source == "KAGGLE_API_TOKEN" else f"from {source}"
        return (
            f"Kaggle did not accept the access token {where}: it is wrong, expired or revoked. "
            f'Create a new one at {SETTINGS_URL} ("Generate New Token") and use it instead, '
            "or remove the old one to use another kind of credentials.\n"
            + credentials_help(api.config)
        )
    named = [name for name in ("KAGGLE_USERNAME", "KAGGLE_KEY") if os.environ.get(name)]
    if len(named) == 1:
        other = "KAGGLE_KEY" if named == ["KAGGLE_USERNAME"] else "KAGGLE_USERNAME"
        return (
            f"{named[0]} is set but {other} is not: a legacy API key needs both (the "
            f'"username" and "key" of kaggle.json).\n' + credentials_help(api.config)
        )
    return "no Kaggle credentials found. " + credentials_help(api.config)


@contextlib.contextmanager
def _client_call(api: Any, *, competition: str, action: str, tail: str) -> Iterator[io.StringIO]:
    """Run a client call: its errors translated, its printed output moved to stderr."""
    output = io.StringIO()
    with _translated(api, competition=competition, action=action, tail=tail):
        with contextlib.redirect_stdout(output):
            yield output
        # Only after success: on failure, the error message says what matters.
        _pass_on(output)


def _pass_on(output: io.StringIO) -> None:
    # What the client prints (a kaggle.json readable by others, an outdated client) is for
    # the user, but not for our stdout, which commands keep for their own results.
    if text := output.getvalue().strip():
        print(text, file=sys.stderr)


@contextlib.contextmanager
def _translated(api: Any, *, competition: str, action: str, tail: str) -> Iterator[None]:
    """Turn the client's requests exceptions into KaggleErrors that say what to do."""
    import requests

    try:
        yield
    except requests.HTTPError as exc:
        raise KaggleError(_http_message(exc, api, competition=competition, action=action)) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise KaggleError(_connection_message(exc, action=action, tail=tail)) from exc
    except requests.RequestException as exc:
        raise KaggleError(f"cannot {action}: the request to Kaggle failed ({exc})") from exc


def _http_message(exc: Any, api: Any, *, competition: str, action: str) -> str:
    response = exc.response
    status = response.status_code if response is not None else 0
    status_text = f"{status} {response.reason}" if response is not None else "no status"
    page = COMPETITION_URL.format(competition=competition)
    if status == 401:
        return (
            f"Kaggle did not accept {_who(api)} ({status_text}): it is wrong, expired or revoked. "
            f"Create a new API token at {SETTINGS_URL} and set it up again.\n"
            + credentials_help(api.config)
        )
    if status == 403:
        return (
            f"Kaggle refused to {action} ({status_text}): accept the competition's rules with "
            f"your Kaggle account at {page}/rules, then run the command again"
        )
    if status == 404:
        return (
            f"Kaggle has no competition {competition!r} ({status_text}): check the name, the "
            "last part of the competition's address (digit-recognizer in "
            f"{COMPETITION_URL.format(competition='digit-recognizer')})"
        )
    if status == 429:
        wait = response.headers.get("Retry-After", "")
        when = f"{wait} seconds" if wait.isdigit() else "a few minutes"
        return (
            f"Kaggle is limiting how often you call it ({status_text}): wait {when}, then run "
            "the command again"
        )
    if status >= 500:
        return (
            f"Kaggle failed on its side when asked to {action} ({status_text}): this is not "
            "a problem with your command; try again in a few minutes"
        )
    return f"Kaggle refused to {action} ({status_text}): {exc}"


def _who(api: Any) -> str:
    method = str(api.config_values.get(api.CONFIG_NAME_AUTH_METHOD, ""))
    user = api.config_values.get(api.CONFIG_NAME_USER)
    if method == "LEGACY_API_KEY":
        return f"the API key of user {user!r}"
    if method == "ACCESS_TOKEN":
        return f"the access token of user {user!r}"
    if method == "OAUTH":
        return f"the 'kaggle auth login' sign-in of user {user!r}"
    return "your credentials"


def _connection_message(exc: Any, *, action: str, tail: str) -> str:
    import requests

    url = getattr(exc.request, "url", None) or ""
    parts = urlsplit(url)
    server = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "Kaggle"
    text = str(exc).lower()
    if isinstance(exc, requests.Timeout):
        why = "did not answer in time"
    elif "refused" in text:
        why = "refused the connection"
    elif "resolution" in text or "resolve" in text or "not known" in text:
        why = "has an address this machine cannot look up (is it offline?)"
    else:
        why = "cannot be reached"
    if isinstance(exc, requests.exceptions.ProxyError):
        proxy = requests.utils.get_environ_proxies(url).get(parts.scheme, "")
        variable = f"{parts.scheme.upper()}_PROXY"
        return (
            f"cannot {action}: the proxy {proxy} ({variable}) {why}. Check that the proxy "
            f"runs, or unset {variable} to connect directly; {tail}"
        )
    return (
        f"cannot {action}: Kaggle ({server}) {why}. Check that this machine is online (and "
        f"HTTPS_PROXY, if you need a proxy); {tail}"
    )


def _move_files(staging: Path, dest: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(staging.rglob("*")):
        if not path.is_file() or path.name.endswith(".kaggle-partial"):
            continue
        name = path.relative_to(staging).as_posix()
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        files[name] = target
    return files
