"""Steps 3 and 4 of grading: collect what the notebook produced, check it outside the kernel.

- ``accuracy``: the kernel saves the model variable into ``outbox/`` (a collection snippet run
  after the notebook); a separate evaluator process, sandboxed like the kernel, loads the file
  with Keras ``safe_mode`` and predicts held-out images it is given without their labels; the
  labels stay here, in the grader process, which compares.
- ``csv``: the file the notebook wrote is validated against its competition's format and scored
  on the held-back test labels, public and private parts apart, like Kaggle.

Nothing here trusts the kernel: a student who patches ``predict``, numpy or builtins inside
the notebook changes nothing that is measured here.
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

from .config import AccuracyCheck, AssignmentConfig, CsvCheck, check_notebook_for
from .csvcheck import InvalidCsvError, check_csv, score_csv
from .errors import DataError
from .evaluate import accuracy_item, collect_snippet, evaluate_model
from .execute import ExecutionOutcome
from .job import GradeJob, zero_item
from .policy import evaluator_wrapper
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
) -> list[ItemResult]:
    """One item per check of the assignment."""
    items = []
    for check in job.config.checks:
        notebook = check_notebook_for(check, job.config)
        if notebook not in outcomes:
            items.append(zero_item(check, job.config, f"{notebook}.ipynb could not be run"))
            continue
        if isinstance(check, AccuracyCheck):
            items.append(accuracy_check(job, check, workdir, outcomes[notebook]))
        else:
            items.append(csv_check(job, check, workdir, out_dir, outcomes[notebook]))
    return items


def accuracy_check(
    job: GradeJob, check: AccuracyCheck, workdir: Path, outcome: ExecutionOutcome
) -> ItemResult:
    """Evaluate the collected model on the held-out images; compare with the labels here."""
    if not outcome.collected:
        # The collection step never ran (the kernel died or stopped answering): whatever file
        # sits at the model's path was left there by the notebook and proves nothing.
        why = outcome.message or "the notebook did not run to the end"
        return zero_item(check, job.config, f"the model could not be collected: {why}")

    heldout = job.heldout[check.dataset]
    meta = _meta(heldout)
    labels = np.load(heldout / "heldout-labels.npy", allow_pickle=False)
    classes = [str(c) for c in meta["classes"]]
    model = workdir / model_path(check)
    scratch = Path(tempfile.mkdtemp(prefix="autograder-eval-"))
    try:
        wrapper = None
        if job.settings.sandbox:
            wrapper = evaluator_wrapper(
                job=job, model=model, images=heldout / "heldout-images.npy", scratch=scratch
            )
        result = evaluate_model(
            model_path=model,
            images_path=heldout / "heldout-images.npy",
            scale=check.scale,
            n_classes=len(classes),
            timeout=EVALUATE_TIMEOUT_S,
            workdir=scratch,
            command_wrapper=wrapper,
            env={"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in job.gpus)},
        )
    finally:
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
