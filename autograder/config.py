"""The course layout and each assignment's configuration (``source/<assignment>/assignment.toml``).

Configuration is frozen dataclasses; every field has a type, a default and a one-line help text
(``field(metadata={"help": ...})``). Unknown keys are errors that name the valid ones, so a typo
in a threshold is caught before a class is graded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError
from .handin import SubmissionConfig, parse_submission, scored_files

ASSIGNMENT_FILE = "assignment.toml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _opt(default: Any, text: str) -> Any:
    """A field with a default and the help the README's reference repeats."""
    return dataclasses.field(default=default, metadata=_help(text))


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a safe folder name (no slashes, no leading dot), else raise."""
    if not _NAME.match(name) or name in {".", ".."}:
        raise ConfigError(
            f"{kind} name {name!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


@dataclasses.dataclass(frozen=True)
class Course:
    """The folders of one course, in nbgrader's layout, under ``root``."""

    root: Path
    #: Gradebook database URL; default: SQLite file gradebook.db in the course folder.
    gradebook: str | None = None

    @classmethod
    def at(
        cls, root: str | os.PathLike[str] | None = None, *, gradebook: str | None = None
    ) -> Course:
        """The course in ``root``, else ``$AUTOGRADER_COURSE``, else the current folder."""
        chosen = root or os.environ.get("AUTOGRADER_COURSE") or "."
        return cls(Path(chosen).resolve(), gradebook)

    def source(self, assignment: str) -> Path:
        return self.root / "source" / check_name("assignment", assignment)

    def release(self, assignment: str) -> Path:
        return self.root / "release" / check_name("assignment", assignment)

    @property
    def submitted_root(self) -> Path:
        return self.root / "submitted"

    def submitted(self, student: str, assignment: str) -> Path:
        return self.submitted_root / check_name("student", student) / assignment

    def autograded(self, student: str, assignment: str) -> Path:
        return self.root / "autograded" / check_name("student", student) / assignment

    def feedback(self, student: str, assignment: str) -> Path:
        return self.root / "feedback" / check_name("student", student) / assignment

    @property
    def gradebook_path(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def gradebook_url(self) -> str:
        return self.gradebook or f"sqlite:///{self.gradebook_path}"

    def data(self, dataset: str) -> Path:
        """Released inputs of a data set (what a kernel may read): train.csv, test.csv..."""
        return self.root / "data" / check_name("dataset", dataset)

    @property
    def state(self) -> Path:
        """Grader-only state; never mounted into a sandbox, mode 0700."""
        return self.root / ".autograder"

    def heldout(self, dataset: str) -> Path:
        """Grader-only labels and held-out images of a data set."""
        return self.state / "heldout" / check_name("dataset", dataset)

    def assignments(self) -> list[str]:
        """Names of the assignments in ``source/``, sorted."""
        src = self.root / "source"
        if not src.is_dir():
            return []
        return sorted(p.name for p in src.iterdir() if p.is_dir() and _NAME.match(p.name))


@dataclasses.dataclass(frozen=True)
class ExecuteConfig:
    """How the notebooks of an assignment are run."""

    timeout_cell: float = _opt(600.0, "seconds one cell may run before it is interrupted")
    timeout_total: float = _opt(1800.0, "seconds the whole notebook may run")
    memory_limit: str = _opt("4G", "memory the kernel may use, e.g. 2G or 512M")
    max_processes: int = _opt(256, "processes and threads the submission may have at once")
    max_output_lines: int = _opt(1000, "lines of output kept per cell (nbgrader's LimitOutput)")
    max_output_bytes: int = _opt(1_000_000, "bytes of output kept per cell")
    max_notebook_output_bytes: int = dataclasses.field(
        default=20_000_000, metadata=_help("bytes of output kept per notebook, all kinds together")
    )
    disk_limit: str = _opt("1G", "what the work folder may hold (the notebook, its files)")
    max_files: int = _opt(100_000, "files and folders the work folder may hold")
    cpu_limit: float = _opt(0.0, "CPU seconds of all its processes; 0: 4 x timeout_total")
    parameters: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        metadata=_help("values injected after the notebook's 'parameters' cell when grading"),
    )
    prestart_imports: list[str] = dataclasses.field(
        default_factory=list,
        metadata=_help(
            "modules a waiting kernel imports before the next submission runs, e.g. "
            "['tensorflow']; leave out modules the notebooks configure before importing "
            "(importing keras fixes its backend)"
        ),
    )


@dataclasses.dataclass(frozen=True)
class AccuracyCheck:
    """Held-out accuracy of the model a notebook trained, measured outside the kernel."""

    id: str = dataclasses.field(metadata=_help("item id in the gradebook"))
    points: float = dataclasses.field(metadata=_help("points for reaching the threshold"))
    threshold: float = dataclasses.field(metadata=_help("accuracy needed for the points, 0..1"))
    dataset: str = _opt("", "held-out set to use (default: the assignment's data set)")
    notebook: str = _opt("", "notebook that trains the model (default: the only one)")
    variable: str = _opt("model", "name of the trained keras.Model in the notebook")
    scale: float = _opt(255.0, "pixel values are divided by this before predicting")
    kind: str = "accuracy"


@dataclasses.dataclass(frozen=True)
class CsvCheck:
    """A Kaggle submission file the notebook writes: valid, and scored on held-back labels."""

    id: str = dataclasses.field(metadata=_help("item id in the gradebook"))
    points: float = dataclasses.field(metadata=_help("points for a valid (and good) file"))
    file: str = _opt("submission.csv", "path the notebook writes, in its folder")
    competition: str = _opt("", "format the file must follow (default: its data set's)")
    dataset: str = dataclasses.field(
        default="",
        metadata=_help(
            "data set whose held-back test labels score the file (default: the assignment's)"
        ),
    )
    min_score: float | None = dataclasses.field(
        default=None, metadata=_help("accuracy needed for the points; none: valid is enough")
    )
    notebook: str = _opt("", "notebook that writes the file (default: the only one)")
    kind: str = "csv"


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """How the workshop service (``autograder serve``) takes this assignment's submissions."""

    deadline: str = dataclasses.field(
        default="",
        metadata=_help("after it submissions are accepted and marked late (ISO 8601 with zone)"),
    )
    hard_deadline: str = _opt("", "after it submissions are refused (ISO 8601 with zone)")
    max_upload: str = _opt("20M", "largest upload (the whole request), e.g. 20M")
    min_interval_s: float = _opt(0.0, "seconds a participant waits between two submissions")
    max_per_window: int = _opt(0, "submissions a participant may make per window (0: no limit)")
    window_s: float = _opt(86400.0, "the rolling window of max_per_window, in seconds")
    url: str = dataclasses.field(
        default="",
        metadata=_help(
            "the service's address as participants reach it, e.g. https://workshop.example.org;"
            " when set, release adds a cell that hands the notebook in"
        ),
    )

    def deadline_at(self) -> datetime | None:
        return parse_time(self.deadline, "deadline") if self.deadline else None

    def hard_deadline_at(self) -> datetime | None:
        return parse_time(self.hard_deadline, "hard_deadline") if self.hard_deadline else None


def check_service_url(url: str, where: str) -> None:
    """Refuse a ``[service] url`` that is not an http(s) address of a host."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # raises when the port is not a number
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        valid = valid and not (parts.query or parts.fragment or parts.username is not None)
    except ValueError:
        valid = False
    if not valid or url != url.strip():
        raise ConfigError(
            f"{where}: url {url!r} is not a web address; write the service's address as "
            'participants reach it, e.g. url = "https://workshop.example.org"'
        )


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time with its zone (``2026-12-01T18:00:00+03:00``, or ``Z`` for UTC)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a time; write it as 2026-12-01T18:00:00+03:00"
        ) from None
    if when.tzinfo is None:
        raise ConfigError(f"{what} {text!r} has no time zone; add one, e.g. {text}+00:00 for UTC")
    return when


Check = AccuracyCheck | CsvCheck
CHECK_KINDS: dict[str, type[AccuracyCheck] | type[CsvCheck]] = {
    "accuracy": AccuracyCheck,
    "csv": CsvCheck,
}


@dataclasses.dataclass(frozen=True)
class AssignmentConfig:
    """One assignment: its notebooks, data, execution limits and model checks."""

    name: str
    title: str = dataclasses.field(default="", metadata=_help("shown in feedback"))
    notebooks: tuple[str, ...] = dataclasses.field(
        default=(), metadata=_help("notebook names without .ipynb; default: every notebook")
    )
    dataset: str = _opt("", "released data the kernel reads at ./data ('' for none)")
    execute: ExecuteConfig = dataclasses.field(default_factory=ExecuteConfig)
    checks: tuple[Check, ...] = ()
    service: ServiceConfig = dataclasses.field(default_factory=ServiceConfig)
    submission: SubmissionConfig = dataclasses.field(default_factory=SubmissionConfig)

    @property
    def max_check_points(self) -> float:
        return sum(check.points for check in self.checks)


def check_notebook_for(check: AccuracyCheck | CsvCheck, config: AssignmentConfig) -> str:
    """The notebook a check belongs to: its own ``notebook``, else the assignment's first."""
    notebook = getattr(check, "notebook", "") or ""
    return notebook or config.notebooks[0]


T = TypeVar("T")


def _build(cls: type[T], table: dict[str, Any], where: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are "
            f"{', '.join(sorted(fields))}"
        )
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and name not in table
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**table)
    except TypeError as exc:  # pragma: no cover - guarded above
        raise ConfigError(f"{where}: {exc}") from exc


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_types(obj: Any, where: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        optional = expected.endswith(" | None")
        expected = expected.removesuffix(" | None")
        if optional and value is None:
            continue
        if expected == "float" and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(obj, f.name, float(value))
        elif expected == "float" and not isinstance(value, float):
            raise ConfigError(f"{where}: {f.name} must be a number, got {value!r}")
        elif expected == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"{where}: {f.name} must be an integer, got {value!r}")
        elif expected == "str" and not isinstance(value, str):
            raise ConfigError(f"{where}: {f.name} must be a string, got {value!r}")


def parse_assignment(name: str, data: dict[str, Any], *, where: str) -> AssignmentConfig:
    """Build an :class:`AssignmentConfig` from the parsed TOML of ``assignment.toml``."""
    data = dict(data)
    top = dict(data.pop("assignment", {}))
    execute_table = data.pop("execute", {})
    check_tables = data.pop("checks", [])
    service_table = data.pop("service", {})
    submission_table = data.pop("submission", {})
    if data:
        raise ConfigError(
            f"{where}: unknown table(s) {', '.join(sorted(data))}; valid tables are "
            "[assignment], [execute], [service], [submission] and [[checks]]"
        )
    service = _build(ServiceConfig, dict(service_table), f"{where} [service]")
    _check_types(service, f"{where} [service]")
    try:
        parse_size(service.max_upload)
        service.deadline_at(), service.hard_deadline_at()
    except ConfigError as exc:
        raise ConfigError(f"{where} [service]: {exc}") from None
    if min(service.min_interval_s, service.max_per_window, service.window_s) < 0:
        raise ConfigError(f"{where} [service]: limits must not be negative")
    if service.url:
        check_service_url(service.url, f"{where} [service]")
    execute = _build(ExecuteConfig, dict(execute_table), f"{where} [execute]")
    _check_types(execute, f"{where} [execute]")
    if not isinstance(execute.parameters, dict):
        raise ConfigError(f"{where} [execute]: parameters must be a table")
    try:
        if parse_size(execute.disk_limit) < 2**20:
            raise ConfigError(f"disk_limit {execute.disk_limit!r} is under 1M; give e.g. 1G")
        if execute.cpu_limit < 0:
            raise ConfigError("cpu_limit must not be negative (0: four times timeout_total)")
    except ConfigError as exc:
        raise ConfigError(f"{where} [execute]: {exc}") from None
    imports = execute.prestart_imports
    if not isinstance(imports, list) or not all(
        isinstance(m, str) and _MODULE.match(m) for m in imports
    ):
        raise ConfigError(
            f"{where} [execute]: prestart_imports must be a list of module names such as "
            f"['numpy', 'tensorflow'], got {imports!r}"
        )

    checks: list[Check] = []
    seen: set[str] = set()
    for i, table in enumerate(check_tables, start=1):
        table = dict(table)
        kind = table.get("kind")
        if kind not in CHECK_KINDS:
            raise ConfigError(
                f"{where} [[checks]] #{i}: kind must be one of {', '.join(CHECK_KINDS)}, "
                f"got {kind!r}"
            )
        check = _build(CHECK_KINDS[kind], table, f"{where} [[checks]] #{i}")
        _check_types(check, f"{where} [[checks]] #{i}")
        if check.id in seen:
            raise ConfigError(f"{where}: two checks have the id {check.id!r}; ids must differ")
        if check.points < 0:
            raise ConfigError(f"{where}: check {check.id!r} has negative points")
        if isinstance(check, AccuracyCheck) and not 0.0 <= check.threshold <= 1.0:
            raise ConfigError(
                f"{where}: check {check.id!r} threshold {check.threshold} must be between 0 and 1"
            )
        seen.add(check.id)
        checks.append(check)

    notebooks = top.pop("notebooks", [])
    if not isinstance(notebooks, list) or not all(isinstance(n, str) for n in notebooks):
        raise ConfigError(f"{where} [assignment]: notebooks must be a list of names")
    top_known = {"title", "dataset"}
    unknown = sorted(set(top) - top_known)
    if unknown:
        raise ConfigError(
            f"{where} [assignment]: unknown key(s) {', '.join(unknown)}; valid keys are "
            "dataset, notebooks, title"
        )
    dataset = top.get("dataset", "")
    if dataset:
        check_name("dataset", dataset)
    config = AssignmentConfig(
        name=name,
        title=str(top.get("title", "")),
        notebooks=tuple(n.removesuffix(".ipynb") for n in notebooks),
        dataset=dataset,
        execute=execute,
        checks=tuple(_inherit(check, dataset) for check in checks),
        service=service,
    )
    submission = parse_submission(
        submission_table, where=where, outputs=scored_files(config.checks), dataset=dataset
    )
    return dataclasses.replace(config, submission=submission)


#: The data set of a check that names none, in an assignment that names none either.
DEFAULT_DATASET = "digits"


def _inherit(check: Check, dataset: str) -> Check:
    """A check without a ``dataset`` reads the assignment's (a fashion course's checks score
    on Fashion-MNIST without saying so); a CSV check without a ``competition`` follows the
    format of its data set (each data set ``data prepare`` writes is a competition of that
    name), which is what its rows are counted from."""
    own = check_name("dataset", check.dataset or dataset or DEFAULT_DATASET)
    check = dataclasses.replace(check, dataset=own)
    if isinstance(check, CsvCheck) and not check.competition:
        check = dataclasses.replace(check, competition=own)
    return check


def load_assignment(course: Course, assignment: str) -> AssignmentConfig:
    """Read ``source/<assignment>/assignment.toml`` (all defaults when the file is absent)."""
    folder = course.source(assignment)
    if not folder.is_dir():
        known = ", ".join(course.assignments()) or "none"
        raise ConfigError(
            f"no assignment {assignment!r} in {course.root / 'source'} (assignments: {known}); "
            "check the name, or run the command from the course folder (--course-dir)"
        )
    path = folder / ASSIGNMENT_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the file and retry") from exc
    config = parse_assignment(assignment, data, where=str(path))
    notebooks = config.notebooks or tuple(
        sorted(p.stem for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    )
    for nb in notebooks:
        if not (folder / f"{nb}.ipynb").exists():
            raise ConfigError(f"{path}: notebook {nb!r} is listed but {nb}.ipynb is not there")
    for check in config.checks:
        if isinstance(check, AccuracyCheck | CsvCheck):
            if not check.notebook and len(notebooks) != 1:
                raise ConfigError(
                    f"{path}: check {check.id!r} must name its notebook; the assignment has "
                    f"{len(notebooks)} notebooks"
                )
            if check.notebook and check.notebook not in notebooks:
                raise ConfigError(
                    f"{path}: check {check.id!r} names notebook {check.notebook!r}, which is "
                    f"not one of {', '.join(notebooks)}"
                )
    return dataclasses.replace(config, notebooks=notebooks)


def parse_size(text: str) -> int:
    """Bytes in a size like ``4G``, ``512M``, ``1.5GiB`` or ``1000000``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise ConfigError(f"size {text!r} is not understood; write e.g. 2G, 512M or 1000000")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))
