"""Steps 3 and 4 of grading: collect what the notebook produced, check it outside the kernel.

- ``accuracy``: the kernel saves the model variable into ``outbox/`` (a collection snippet run
  after the notebook); a separate evaluator process, sandboxed like the kernel, loads the file
  with Keras ``safe_mode`` and predicts held-out images it is given without their labels; the
  labels stay here, in the grader process, which compares.
- ``csv``: the file the notebook wrote is validated against its competition's format and scored
  on the held-back test labels, public and private parts apart, like Kaggle.

Nothing here trusts the kernel: a student who patches ``predict``, numpy or builtins inside
the notebook changes nothing that is measured here. Nor the hand-in: a CSV handed in beside
the notebook under the name a check scores never reaches the work folder
(:mod:`autograder.handin`); :func:`report_handed_in` validates it and reports, never scores.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .accuracy import accuracy_item
from .config import AccuracyCheck, AssignmentConfig, CsvCheck, check_notebook_for
from .csvcheck import InvalidCsvError, check_csv, score_csv
from .errors import DataError
from .evaluate import Evaluator, collect_snippet, evaluate_model, start_evaluator
from .execute import ExecutionOutcome
from .job import GradeJob, zero_item
from .policy import evaluator_policy, evaluator_wrapper
from .prestart import Evaluators
from .results import ItemResult

OUTBOX = "outbox"
#: Seconds the evaluator may take (process start, Keras import, load, predict).
EVALUATE_TIMEOUT_S = 600.0


def model_path(check: AccuracyCheck) -> str:
    """Where, relative to the notebook's folder, the collected model of ``check`` is saved."""
    return f"{OUTBOX}/{check.id}.keras"


#: Saves the per-epoch metrics of a Keras History named ``history``, for the feedback page.
#: Runs in the (untrusted) kernel: what it writes is read back as data, checked and capped.
HISTORY_SNIPPET = """
def _autograder_dump_history():
    import json as _json
    _h = globals().get("history")
    _d = getattr(_h, "history", None)
    if isinstance(_d, dict):
        _out = {str(k): [float(x) for x in list(v)[:1000]] for k, v in list(_d.items())[:20]}
        with open(__PATH__, "w") as _f:
            _json.dump(_out, _f)
try:
    _autograder_dump_history()
except Exception:
    pass
del _autograder_dump_history
"""
HISTORY_FILE = "history.json"
MAX_HISTORY_BYTES = 200_000


def collect_snippets(config: AssignmentConfig, notebook: str, workdir: Path) -> list[str]:
    """Code run in the kernel after ``notebook``: save each checked model variable, and the
    training history when the notebook kept one. Paths are absolute (the sandbox mounts the
    workdir at the same path), so a notebook that changed its folder is still collected."""
    wanted = [
        c
        for c in config.checks
        if isinstance(c, AccuracyCheck) and check_notebook_for(c, config) == notebook
    ]
    if not wanted:
        return []
    history = HISTORY_SNIPPET.replace("__PATH__", repr(str(workdir / OUTBOX / HISTORY_FILE)))
    return [history, *(collect_snippet(c.variable, str(workdir / model_path(c))) for c in wanted)]


def read_history(workdir: Path) -> dict[str, list[float]] | None:
    """The training history the kernel dumped, if it is a sane dict of metric -> numbers."""
    path = workdir / OUTBOX / HISTORY_FILE
    if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_HISTORY_BYTES:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    history = {}
    for key, values in list(data.items())[:20]:
        if isinstance(values, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values
        ):
            history[str(key)[:64]] = [float(v) for v in values[:1000]]
    return history or None


def _meta(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "meta.json").read_text()))


def run_checks(
    job: GradeJob,
    workdir: Path,
    outcomes: Mapping[str, ExecutionOutcome],
    out_dir: Path,
    evaluators: Evaluators | None = None,
) -> list[ItemResult]:
    """One item per check of the assignment; ``evaluators``: those started for this job
    while its notebooks ran (:func:`start_evaluators`)."""
    items = []
    for check in job.config.checks:
        notebook = check_notebook_for(check, job.config)
        if notebook not in outcomes:
            items.append(zero_item(check, job.config, f"{notebook}.ipynb could not be run"))
            continue
        if isinstance(check, AccuracyCheck):
            items.append(accuracy_check(job, check, workdir, outcomes[notebook], evaluators))
        else:
            items.append(csv_check(job, check, workdir, out_dir, outcomes[notebook]))
    return items


def _evaluator_setup(job: GradeJob, check: AccuracyCheck, scratch: Path) -> dict[str, Any]:
    """What the evaluator of ``check`` in ``scratch`` is started with, all but the model."""
    heldout = job.heldout[check.dataset]
    return {
        "images_path": heldout / "heldout-images.npy",
        "scale": check.scale,
        "n_classes": len(_meta(heldout)["classes"]),
        "command_wrapper": evaluator_wrapper(job=job, scratch=scratch),
        "env": {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in job.gpus)},
    }


def evaluator_key(job: GradeJob, check: AccuracyCheck, scratch: Path) -> tuple[Any, ...]:
    """Everything the evaluator of ``check`` in ``scratch`` is started with: one started
    ahead is handed the model only if its key is the same (see prestart)."""
    setup = _evaluator_setup(job, check, scratch)
    images = setup["images_path"].stat()
    return (
        evaluator_policy(job, scratch),
        setup["env"],
        str(setup["images_path"]),
        (images.st_size, images.st_mtime_ns),
        setup["scale"],
        setup["n_classes"],
    )


def start_evaluators(job: GradeJob, notebook: str, evaluators: Evaluators) -> None:
    """Start the evaluator of each accuracy check that reads ``notebook``, to be handed its
    model when the notebook has run (called once its kernel answers)."""
    for check in job.config.checks:
        if isinstance(check, AccuracyCheck) and check_notebook_for(check, job.config) == notebook:

            def start(scratch: Path, check: AccuracyCheck = check) -> Evaluator | None:
                return start_evaluator(
                    workdir=scratch,
                    key=evaluator_key(job, check, scratch),
                    **_evaluator_setup(job, check, scratch),
                )

            evaluators.start(check.id, start)


def accuracy_check(
    job: GradeJob,
    check: AccuracyCheck,
    workdir: Path,
    outcome: ExecutionOutcome,
    evaluators: Evaluators | None = None,
) -> ItemResult:
    """Evaluate the collected model on the held-out images (in the evaluator started for it,
    when one waits in ``evaluators`` and fits); compare with the labels here."""
    if not outcome.collected:
        # The collection step never ran (the kernel died or stopped answering): whatever file
        # sits at the model's path was left there by the notebook and proves nothing.
        why = outcome.message or "the notebook did not run to the end"
        return zero_item(check, job.config, f"the model could not be collected: {why}")

    heldout = job.heldout[check.dataset]
    labels = np.load(heldout / "heldout-labels.npy", allow_pickle=False)
    classes = [str(c) for c in _meta(heldout)["classes"]]
    scratch = Path(tempfile.mkdtemp(prefix="autograder-eval-"))
    waiting = None
    if evaluators is not None:
        waiting = evaluators.take(check.id, lambda folder: evaluator_key(job, check, folder))
    try:
        result = evaluate_model(
            model_path=workdir / model_path(check),
            timeout=EVALUATE_TIMEOUT_S,
            workdir=scratch,
            evaluator=waiting,
            **_evaluator_setup(job, check, scratch),
        )
    finally:
        if waiting is not None:
            waiting.close()
        shutil.rmtree(scratch, ignore_errors=True)
    item = accuracy_item(check, result, labels, classes)
    return _with_notebook(item, check_notebook_for(check, job.config))


def _with_notebook(item: ItemResult, notebook: str) -> ItemResult:
    return dataclasses.replace(item, notebook=notebook)


def _invalid_csv_message(check: CsvCheck, report: Any) -> str:
    """One sentence: how many problems, then the first of each kind (the page lists more)."""
    total = sum(report.counts.values())
    first = [line.strip() for line in report.summary(max_per_rule=2).split("\n")[1:]]
    return (
        f"{check.file} is not a valid {check.competition} submission "
        f"({total:,} problem{'' if total == 1 else 's'}): " + "; ".join(first)
    )


#: Calls that write a CSV: a cell naming one of them (or the file) is taken for the writer.
_WRITERS = ("to_csv", "savetxt", "csv.writer", "write_submission")
#: Statuses that mean the notebook stopped before its end (the kernel died, ran out of time).
_STOPPED = {"kernel-died", "memory", "disk", "timeout"}


def _not_written(check: CsvCheck, outcome: ExecutionOutcome | None) -> str:
    """Why the notebook wrote no ``check.file``: what really happened, when it is known."""
    if outcome is not None and outcome.status in _STOPPED and outcome.message:
        return f"the notebook did not write {check.file}: {outcome.message}"
    if outcome is not None:
        name = Path(check.file).name
        count = 0
        for cell in outcome.nb.cells:
            if cell.cell_type != "code":
                continue
            count += 1
            source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
            if name not in source and not any(w in source for w in _WRITERS):
                continue
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    error = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                    return (
                        f"the notebook did not write {check.file}: cell [{count}], which writes "
                        f"it, raised {error.strip().rstrip(':')[:300]}; fix that cell"
                    )
    return f"the notebook did not write {check.file}; run the cell that saves the predictions"


def csv_check(
    job: GradeJob,
    check: CsvCheck,
    workdir: Path,
    out_dir: Path,
    outcome: ExecutionOutcome | None = None,
) -> ItemResult:
    """Validate the notebook's CSV for its competition and score it on the held-back labels.

    The points depend on the public score only, the one a participant sees during the
    workshop (as on Kaggle's public leaderboard): a gate on the overall score would pass or
    fail on labels nobody is shown, and tell them something about the private part."""
    heldout = job.heldout[check.dataset]
    meta = _meta(heldout)
    path = (workdir / check.file).resolve()
    if workdir.resolve() not in path.parents:
        return zero_item(check, job.config, f"{check.file} is outside the notebook's folder")
    if not path.exists() and not path.is_symlink():
        return zero_item(check, job.config, _not_written(check, outcome))
    if path.is_symlink() or not path.is_file():
        return zero_item(check, job.config, f"{check.file} is not a regular file")
    # Check and score the grader's copy: nothing the notebook left running can change it.
    copy = out_dir / Path(check.file).name
    shutil.copyfile(path, copy)
    report = check_csv(copy, competition=check.competition, rows=int(meta["counts"]["test"]))
    if not report.valid:
        return ItemResult(
            id=check.id,
            kind="csv",
            score=0.0,
            max_score=check.points,
            passed=False,
            message=_invalid_csv_message(check, report),
            notebook=check_notebook_for(check, job.config),
            details={"report": report.to_json()},
        )
    labels = heldout / "test-labels.csv"
    if not labels.exists():
        return ItemResult(
            id=check.id,
            kind="csv",
            score=check.points,
            max_score=check.points,
            passed=True,
            message=f"{check.file} is valid; its score is computed by Kaggle, not here",
            notebook=check_notebook_for(check, job.config),
            details={"report": report.to_json()},
        )
    try:
        score = score_csv(report, labels)
    except InvalidCsvError as exc:
        return zero_item(check, job.config, f"{check.file}: {exc}")
    except DataError as exc:
        return zero_item(
            check,
            job.config,
            f"{check.file} could not be scored: {exc} (a problem of the course's data, not of "
            "the submission; ask the instructor)",
        )
    details = {
        "public": score.public,
        "private": score.private,
        "overall": score.overall,
        "correct": score.correct,
        "rows": report.rows_seen,
    }
    if check.min_score is not None and score.public < check.min_score:
        return ItemResult(
            id=check.id,
            kind="csv",
            score=0.0,
            max_score=check.points,
            passed=False,
            message=(
                f"{check.file} is valid but its public score {score.public:.3f} is below the "
                f"required {check.min_score:.3f}"
            ),
            notebook=check_notebook_for(check, job.config),
            details=details,
        )
    needed = f" (required {check.min_score:.3f})" if check.min_score is not None else ""
    return ItemResult(
        id=check.id,
        kind="csv",
        score=check.points,
        max_score=check.points,
        passed=True,
        message=f"{check.file} is valid; its public score is {score.public:.3f}{needed}",
        notebook=check_notebook_for(check, job.config),
        details=details,
    )


#: What the CSV item's message adds when the notebook wrote no file but one was handed in.
HANDED_IN_HINT = (
    " (the {file} handed in beside the notebook is checked but never scored: a CSV counts "
    "only when the notebook writes it while it is graded)"
)


def report_handed_in(
    job: GradeJob, items: list[ItemResult], handed_in: Mapping[str, Path], notes: list[str]
) -> list[ItemResult]:
    """Validate each CSV handed in under the name a check scores (from the submission folder,
    without following links); its report goes into the check's details (``handed_in``) and a
    note, and the item's message says why it did not count. Scores are left as they are."""
    by_id = {check.id: check for check in job.config.checks if isinstance(check, CsvCheck)}
    reports: dict[str, dict[str, Any]] = {}
    for check in by_id.values():
        path = handed_in.get(Path(check.file).as_posix())
        if path is None:
            continue
        meta = _meta(job.heldout[check.dataset])
        report = check_csv(path, competition=check.competition, rows=int(meta["counts"]["test"]))
        reports[check.id] = dict(report.to_json(), path=check.file)
        if report.valid:
            verdict = f"it is a valid {check.competition} submission of {report.rows_seen:,} rows"
        else:
            verdict = "it is " + _invalid_csv_message(check, report).removeprefix(
                f"{check.file} is "
            )
        notes.append(
            f"{check.file}, handed in beside the notebook, was checked but not scored (a CSV "
            f"counts only when the notebook writes it while it is graded): {verdict}"
        )
    out = []
    for item in items:
        if item.kind == "csv" and item.id in reports:
            message = item.message
            if not item.passed and "did not write" in message:
                message += HANDED_IN_HINT.format(file=by_id[item.id].file)
            details = {**item.details, "handed_in": reports[item.id]}
            item = dataclasses.replace(item, message=message, details=details)
        out.append(item)
    return out
