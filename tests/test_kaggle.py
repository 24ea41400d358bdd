"""autograder.kaggle: the real kaggle client, driven against a stand-in server on loopback.

Every test runs in a fresh HOME with every KAGGLE_* and proxy variable cleared, so the
developer's ~/.kaggle is never read or written, and with HTTPS_PROXY on a closed loopback port,
so nothing can leave the machine even if the client aimed at the real Kaggle.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from kaggle_standin import COMPETITIONS, KaggleStandIn, digit_recognizer_files

from autograder import kaggle
from autograder.cli import cli
from autograder.csvcheck import check_csv
from autograder.errors import KaggleError

REPO = Path(__file__).resolve().parents[1]
DOWNLOAD = f"POST {COMPETITIONS}/DownloadDataFiles"
START_UPLOAD = f"POST {COMPETITIONS}/StartSubmissionUpload"
CREATE = f"POST {COMPETITIONS}/CreateSubmission"
INTROSPECT = "POST security.OAuthService/IntrospectToken"
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME, no Kaggle credentials, the client aimed at http://localhost."""
    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    dead_end = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", dead_end)
    monkeypatch.setenv("https_proxy", dead_end)
    # Import the client now, without credentials, so its sign-in on import never reaches a
    # test's stand-in (the import happens once per process, in whichever test comes first).
    kaggle._kaggle_api_class()
    return folder


@pytest.fixture
def standin(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KaggleStandIn]:
    """The stand-in, with the client's http://localhost requests routed to it."""
    with KaggleStandIn() as server:
        monkeypatch.setenv("HTTP_PROXY", server.proxy)
        monkeypatch.setenv("http_proxy", server.proxy)
        yield server


@pytest.fixture
def signed_in(standin: KaggleStandIn, monkeypatch: pytest.MonkeyPatch) -> KaggleStandIn:
    """The stand-in, and a legacy API key it accepts in KAGGLE_USERNAME / KAGGLE_KEY."""
    monkeypatch.setenv("KAGGLE_USERNAME", standin.username)
    monkeypatch.setenv("KAGGLE_KEY", standin.key)
    return standin


def basic_auth(server: KaggleStandIn) -> str:
    return "Basic " + base64.b64encode(f"{server.username}:{server.key}".encode()).decode()


def submission(path: Path, *, rows: int = 28000, broken: bool = False) -> Path:
    lines = ["ImageId,Label", *(f"{i},{i % 10}" for i in range(1, rows + 1))]
    if broken:
        lines[17] = "12,3"  # ImageId 12 twice
    path.write_text("\n".join(lines) + "\n")
    return path


def credentials_text(home: Path) -> str:
    return (
        "Set up one of these, then run the command again:\n"
        '  - an API token: create one at https://www.kaggle.com/settings/api ("Generate New '
        'Token"), then\n'
        "    export KAGGLE_API_TOKEN=<token>, or save it in ~/.kaggle/access_token (chmod 600);\n"
        '  - a legacy API key: "Create Legacy API Key" on the same page downloads kaggle.json;\n'
        f"    save it as {home}/.config/kaggle/kaggle.json (chmod 600), or export\n"
        "    KAGGLE_USERNAME=<username> KAGGLE_KEY=<key>;\n"
        "  - a browser sign-in: run 'kaggle auth login' once on this machine."
    )


# --- download ----------------------------------------------------------------------------------


def test_download_writes_the_competition_files(signed_in: KaggleStandIn, tmp_path: Path):
    dest = tmp_path / "digit-recognizer"
    dest.mkdir()
    (dest / "train.csv").write_text("an older download\n")

    files = kaggle.download_competition("digit-recognizer", dest)

    expected = digit_recognizer_files()
    assert sorted(files) == sorted(expected)
    for name, data in expected.items():
        assert files[name] == dest / name
        assert files[name].read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == sorted(expected)  # no zip, no staging
    assert signed_in.calls() == [DOWNLOAD, "GET /storage/digit-recognizer.zip"]
    call = signed_in.requests[0]
    assert call.host == "localhost"
    assert call.headers["authorization"] == basic_auth(signed_in)
    assert call.json() == {"competitionName": "digit-recognizer"}


def test_download_with_an_access_token_checks_it_and_sends_it_as_bearer(
    standin: KaggleStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", standin.token)

    kaggle.download_competition("digit-recognizer", tmp_path / "data")

    assert standin.calls() == [INTROSPECT, DOWNLOAD, "GET /storage/digit-recognizer.zip"]
    assert standin.requests[0].json() == {"token": standin.token}
    assert standin.requests[1].headers["authorization"] == f"Bearer {standin.token}"


def test_download_without_an_expected_file_says_which(home: Path, tmp_path: Path, monkeypatch):
    files = digit_recognizer_files()
    del files["test.csv"]
    with KaggleStandIn(competitions={"digit-recognizer": files}) as server:
        monkeypatch.setenv("http_proxy", server.proxy)
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
        with pytest.raises(KaggleError) as err:
            kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == (
        "the download of digit-recognizer lacks test.csv (it has sample_submission.csv, "
        "train.csv): Kaggle may have changed the competition's files; check "
        "https://www.kaggle.com/competitions/digit-recognizer/data"
    )


def test_data_prepare_kaggle_digit_recognizer_reads_the_download(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from autograder.config import Course
    from autograder.datasets import prepare

    header = ",".join(f"pixel{i}" for i in range(784))
    image = ",".join(str(i % 256) for i in range(784))
    files = {
        "train.csv": "\n".join([f"label,{header}", *(f"{n % 10},{image}" for n in range(200))]),
        "test.csv": "\n".join([header, *([image] * 30)]) + "\n",
        "sample_submission.csv": "ImageId,Label\n" + "".join(f"{i},0\n" for i in range(1, 31)),
    }
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the loader's download folder
    with KaggleStandIn(
        competitions={"digit-recognizer": {k: v.encode() for k, v in files.items()}}
    ) as server:
        monkeypatch.setenv("http_proxy", server.proxy)
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
        prepared = prepare("kaggle:digit-recognizer", course=Course.at(tmp_path / "course"))

    assert prepared.counts == {"train": 180, "test": 30, "heldout": 20}
    assert (prepared.released / "test.csv").read_text() == files["test.csv"]
    assert server.calls() == [DOWNLOAD, "GET /storage/digit-recognizer.zip"]


# --- submit ------------------------------------------------------------------------------------


def test_submit_uploads_the_file_and_creates_the_submission(
    signed_in: KaggleStandIn, tmp_path: Path
):
    file = submission(tmp_path / "submission.csv")

    result = kaggle.submit(file, competition="digit-recognizer", message="CNN, 3 epochs")

    assert signed_in.calls() == [START_UPLOAD, "PUT /upload/blob-1", CREATE]
    start, upload, create = signed_in.requests
    assert start.headers["authorization"] == basic_auth(signed_in)
    assert create.headers["authorization"] == basic_auth(signed_in)
    assert start.json()["competitionName"] == "digit-recognizer"
    assert start.json()["fileName"] == "submission.csv"
    assert start.json()["contentLength"] == file.stat().st_size
    assert upload.body == file.read_bytes()
    assert create.json() == {
        "competitionName": "digit-recognizer",
        "blobFileTokens": "blob-1",
        "submissionDescription": "CNN, 3 epochs",
    }
    assert result == kaggle.SubmitResult(
        competition="digit-recognizer",
        file=file,
        description="CNN, 3 epochs",
        ref=2,
        kaggle_message="Successfully submitted to Digit Recognizer",
        check_summary=check_csv(file, competition="digit-recognizer").summary(),
    )
    assert result.url == "https://www.kaggle.com/competitions/digit-recognizer/submissions"


def test_submit_refuses_an_invalid_file_without_any_request(
    signed_in: KaggleStandIn, tmp_path: Path
):
    file = submission(tmp_path / "submission.csv", broken=True)

    with pytest.raises(KaggleError) as err:
        kaggle.submit(file, competition="digit-recognizer", message="oops")

    summary = check_csv(file, competition="digit-recognizer").summary()
    assert str(err.value) == (
        f"{file} was not submitted to digit-recognizer: it breaks the competition's rules, "
        "and Kaggle would count it against today's submissions. Fix it and submit again.\n"
        f"{summary}"
    )
    assert signed_in.requests == []


def test_submit_refuses_an_invalid_file_even_without_credentials(
    standin: KaggleStandIn, tmp_path: Path
):
    file = submission(tmp_path / "submission.csv", broken=True)
    with pytest.raises(KaggleError, match="was not submitted to digit-recognizer"):
        kaggle.submit(file, competition="digit-recognizer", message="oops")
    assert standin.requests == []


def test_submit_of_a_missing_file_says_so(signed_in: KaggleStandIn, tmp_path: Path):
    with pytest.raises(KaggleError) as err:
        kaggle.submit(tmp_path / "nope.csv", competition="digit-recognizer", message="m")
    assert str(err.value) == (
        f"{tmp_path / 'nope.csv'} is not a file: give the path of the CSV file to submit"
    )
    assert signed_in.requests == []


def test_a_failed_upload_submits_nothing(home: Path, tmp_path: Path, monkeypatch):
    file = submission(tmp_path / "submission.csv")
    with KaggleStandIn(fail={"upload": 500}) as server:
        monkeypatch.setenv("http_proxy", server.proxy)
        monkeypatch.setenv("KAGGLE_USERNAME", server.username)
        monkeypatch.setenv("KAGGLE_KEY", server.key)
        with pytest.raises(KaggleError) as err:
            kaggle.submit(file, competition="digit-recognizer", message="m")
    assert str(err.value) == (
        f"the upload of {file} to Kaggle failed (Kaggle's storage refused the file); nothing "
        "was submitted, so run the command again"
    )
    assert server.calls() == [START_UPLOAD, "PUT /upload/blob-1"]
    assert server.submissions == []


# --- credentials -------------------------------------------------------------------------------


def test_no_credentials_say_how_to_set_them_up(standin: KaggleStandIn, home: Path, tmp_path):
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == "no Kaggle credentials found. " + credentials_text(home)
    assert standin.requests == []


def test_half_a_legacy_key_names_the_missing_variable(
    standin: KaggleStandIn, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == (
        'KAGGLE_USERNAME is set but KAGGLE_KEY is not: a legacy API key needs both (the "username" '
        'and "key" of kaggle.json).\n' + credentials_text(home)
    )


def test_a_wrong_key_gets_401_and_a_clear_message(
    standin: KaggleStandIn, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key")
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == (
        "Kaggle did not accept the API key of user 'alice' (401 Unauthorized): it is wrong, "
        "expired or revoked. Create a new API token at https://www.kaggle.com/settings/api and "
        "set it up again.\n" + credentials_text(home)
    )
    assert standin.calls() == [DOWNLOAD]


def test_a_rejected_access_token_says_to_create_a_new_one(
    standin: KaggleStandIn, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_expired")
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == (
        "Kaggle did not accept the access token in KAGGLE_API_TOKEN: it is wrong, expired or "
        'revoked. Create a new one at https://www.kaggle.com/settings/api ("Generate New '
        'Token") and use it instead, or remove the old one to use another kind of credentials.\n'
        + credentials_text(home)
    )
    assert standin.calls() == [INTROSPECT]


def test_kaggle_json_in_home_is_used(standin: KaggleStandIn, home: Path, tmp_path: Path):
    config = home / ".kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(
        f'{{"username": "{standin.username}", "key": "{standin.key}"}}'
    )
    (config / "kaggle.json").chmod(0o600)

    kaggle.download_competition("digit-recognizer", tmp_path / "data")

    assert standin.requests[0].headers["authorization"] == basic_auth(standin)


# --- Kaggle's refusals and the network ---------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "competition", "message"),
    [
        (
            {"rules_not_accepted": ("digit-recognizer",)},
            "digit-recognizer",
            "Kaggle refused to download the files of digit-recognizer (403 Forbidden): accept "
            "the competition's rules with your Kaggle account at "
            "https://www.kaggle.com/competitions/digit-recognizer/rules, then run the command "
            "again",
        ),
        (
            {},
            "digit-recogniser",
            "Kaggle has no competition 'digit-recogniser' (404 Not Found): check the name, the "
            "last part of the competition's address (digit-recognizer in "
            "https://www.kaggle.com/competitions/digit-recognizer)",
        ),
        (
            {"fail": {"DownloadDataFiles": 429}},
            "digit-recognizer",
            "Kaggle is limiting how often you call it (429 Too Many Requests): wait 7 seconds, "
            "then run the command again",
        ),
        (
            {"fail": {"DownloadDataFiles": 503}},
            "digit-recognizer",
            "Kaggle failed on its side when asked to download the files of digit-recognizer "
            "(503 Service Unavailable): this is not a problem with your command; try again in a "
            "few minutes",
        ),
    ],
    ids=["403-rules", "404-name", "429-rate", "503-kaggle"],
)
def test_download_refusals_say_what_to_do(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server, competition, message
):
    with KaggleStandIn(**server) as standin:
        monkeypatch.setenv("http_proxy", standin.proxy)
        monkeypatch.setenv("KAGGLE_USERNAME", standin.username)
        monkeypatch.setenv("KAGGLE_KEY", standin.key)
        with pytest.raises(KaggleError) as err:
            kaggle.download_competition(competition, tmp_path / "data")
    assert str(err.value) == message
    assert standin.calls() == [DOWNLOAD]
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_submit_before_accepting_the_rules_says_where_to_accept_them(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    file = submission(tmp_path / "submission.csv")
    with KaggleStandIn(rules_not_accepted=("digit-recognizer",)) as standin:
        monkeypatch.setenv("http_proxy", standin.proxy)
        monkeypatch.setenv("KAGGLE_USERNAME", standin.username)
        monkeypatch.setenv("KAGGLE_KEY", standin.key)
        with pytest.raises(KaggleError) as err:
            kaggle.submit(file, competition="digit-recognizer", message="m")
    assert str(err.value) == (
        "Kaggle refused to submit submission.csv to digit-recognizer (403 Forbidden): accept "
        "the competition's rules with your Kaggle account at "
        "https://www.kaggle.com/competitions/digit-recognizer/rules, then run the command again"
    )
    assert standin.calls() == [START_UPLOAD]


def test_connection_refused_gives_a_clear_message(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "key-of-alice")
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("digit-recognizer", tmp_path / "data")
    assert str(err.value) == (
        f"cannot download the files of digit-recognizer: the proxy {proxy} (HTTP_PROXY) refused "
        "the connection. Check that the proxy runs, or unset HTTP_PROXY to connect directly; "
        "offline, 'autograder data prepare digits' writes the same files from built-in data"
    )


def test_an_offline_machine_gets_a_clear_message(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The real address, no proxy, and a resolver that knows only loopback: what an offline
    # machine sees, without a single packet leaving this one.
    real_getaddrinfo = socket.getaddrinfo

    def offline(host, *args, **kwargs):
        if host not in {"localhost", "127.0.0.1"}:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    for name in ("KAGGLE_API_ENVIRONMENT", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", "key-of-alice")
    file = submission(tmp_path / "submission.csv")
    with pytest.raises(KaggleError) as err:
        kaggle.submit(file, competition="digit-recognizer", message="m")
    assert str(err.value) == (
        "cannot submit submission.csv to digit-recognizer: Kaggle (https://api.kaggle.com) has "
        "an address this machine cannot look up (is it offline?). Check that this machine is "
        "online (and HTTPS_PROXY, if you need a proxy); the file is valid, so submit it again "
        "once this machine is online"
    )


def test_a_name_that_is_not_a_competition_is_refused_before_any_request(
    signed_in: KaggleStandIn, tmp_path: Path
):
    with pytest.raises(KaggleError) as err:
        kaggle.download_competition("../etc", tmp_path / "data")
    assert str(err.value) == (
        "'../etc' is not a Kaggle competition name: use the last part of the competition's "
        "address, e.g. digit-recognizer for https://www.kaggle.com/competitions/digit-recognizer"
    )
    assert signed_in.requests == []


# --- command line ------------------------------------------------------------------------------


def test_cli_download_and_submit(signed_in: KaggleStandIn, tmp_path: Path):
    folder = tmp_path / "dr"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["kaggle", "download", "-c", "digit-recognizer", "--path", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"digit-recognizer: 3 file(s) in {folder}\n"
        "  sample_submission.csv\n  test.csv\n  train.csv\n"
    )

    file = submission(tmp_path / "submission.csv")
    result = runner.invoke(
        cli, ["kaggle", "submit", str(file), "-c", "digit-recognizer", "-m", "from the CLI"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{check_csv(file, competition='digit-recognizer').summary()}\n"
        f"submitted {file} to digit-recognizer: Successfully submitted to Digit Recognizer\n"
        "  scores: https://www.kaggle.com/competitions/digit-recognizer/submissions\n"
    )
    assert signed_in.submissions[0]["submissionDescription"] == "from the CLI"
    assert signed_in.submissions[0]["bytes"] == file.read_bytes()


def test_cli_refuses_an_invalid_file_with_the_checkers_summary(
    signed_in: KaggleStandIn, tmp_path: Path
):
    file = submission(tmp_path / "submission.csv", broken=True)
    result = CliRunner().invoke(
        cli, ["kaggle", "submit", str(file), "-c", "digit-recognizer", "-m", "x"]
    )
    assert result.exit_code == 2
    assert check_csv(file, competition="digit-recognizer").summary() in result.stderr
    assert signed_in.requests == []


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    env = {k: v for k, v in env.items() if k.lower() not in PROXY_VARIABLES}
    dead_end = f"http://127.0.0.1:{closed_port()}"
    env.update(HOME=str(home), KAGGLE_API_ENVIRONMENT="LOCALHOST", http_proxy=dead_end)
    env.update(https_proxy=dead_end, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, cwd=home, timeout=60
    )


def test_help_and_import_need_no_credentials_and_leave_the_client_alone(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    for args in (["--help"], ["kaggle", "--help"], ["kaggle", "submit", "--help"]):
        result = _run(["-m", "autograder", *args], home)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    probe = "import sys, autograder.cli, autograder.kaggle; print('kaggle' in sys.modules)"
    assert _run(["-c", probe], home).stdout == "False\n"
    assert list(home.iterdir()) == []  # importing kaggle would create ~/.config/kaggle


def test_cli_without_credentials_prints_only_how_to_set_them_up(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    result = _run(["-m", "autograder", "kaggle", "download", "-c", "digit-recognizer"], home)
    assert result.returncode == 2
    assert result.stdout == ""  # not the kaggle client's own help, printed when it is imported
    assert result.stderr == "error: no Kaggle credentials found. " + credentials_text(home) + "\n"
