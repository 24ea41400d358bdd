"""The service's graders: threads that take submissions from the queue in fair order, grade
each on the same backends as ``autograder grade``, record it through the one gradebook
writer, and write its feedback page. Never in the web loop: the service answers while every
worker is busy.

A submission is graded from ``submitted/<student>/<assignment>/`` like any other (the files
the service stored under the submission's id are copied there first, so ``autograder grade``
and ``feedback`` see what the service graded). Its result carries the submission's id into
the gradebook; after a restart, a submission whose result is already recorded is finished
from it rather than graded again. A failure that is the grader's (the sandbox did not start,
the worker was lost) puts the submission back in line, up to :data:`MAX_ATTEMPTS` tries, and
never counts against the participant's quota.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import AssignmentConfig, Course, load_assignment
from .job import GradeSettings, new_job
from .jobqueue import GRADER_FAULTS, MAX_ATTEMPTS, Queue, Submission
from .results import SubmissionResult

log = logging.getLogger("autograder.service")


def uploads(course: Course) -> Path:
    """Where the service keeps what it received, one folder per submission id."""
    return course.state / "service" / "uploads"


def pages(course: Course) -> Path:
    """Where the service keeps each submission's feedback page."""
    return course.state / "service" / "feedback"


@dataclasses.dataclass
class _Prepared:
    """What grading an assignment needs from the instructor's side, read once per change of
    ``source/<assignment>/``."""

    stamp: tuple[tuple[str, float, int], ...]
    config: AssignmentConfig
    index: dict[str, Any]
    fingerprint: str
    sources: Any = None


def _stamp(folder: Path) -> tuple[tuple[str, float, int], ...]:
    return tuple(
        sorted(
            (str(p.relative_to(folder)), p.stat().st_mtime, p.stat().st_size)
            for p in folder.rglob("*")
            if p.is_file()
        )
    )


class Dispatcher:
    """``workers`` grading threads over ``queue`` (each one slot: a GPU share or the CPU)."""

    def __init__(
        self,
        course: Course,
        queue: Queue,
        *,
        settings: GradeSettings,
        workers: int = 1,
        backend: str = "local",
        scheduler: str | None = None,
        gpus: Sequence[int] = (),
        per_gpu: int = 1,
        poll_s: float = 0.2,
        on_finish: Callable[[Submission], None] | None = None,
    ) -> None:
        from .schedule import check_backend, gpu_slots, prestart_pays

        check_backend(backend, workers)
        self.course, self.queue, self.settings = course, queue, settings
        self.workers, self.backend, self.scheduler = workers, backend, scheduler
        slots = gpu_slots(gpus, per_gpu)
        self.slots = [slots[i % len(slots)] for i in range(workers)]
        # Each job's held-out evaluator starts while its notebook runs where a core or a GPU
        # waits (a job is alone in its run: there is no next kernel to start).
        self.prestart_evaluator = prestart_pays(workers, use_gpu=slots != [()])
        self.poll_s = poll_s
        self.on_finish = on_finish
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.threads: list[threading.Thread] = []
        self._prepared: dict[str, _Prepared] = {}
        self._lock = threading.Lock()
        self.warm: Any = None

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        from .schedule import warm_up

        self.recover()
        self.warm = warm_up(self.backend, workers=self.workers, scheduler=self.scheduler)
        for i, slot in enumerate(self.slots):
            device = f"GPU {','.join(map(str, slot))}" if slot else "CPU"
            thread = threading.Thread(
                target=self._loop, args=(slot, f"grader {i + 1} ({device})"), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout)
        if self.warm is not None:
            self.warm.close()

    def notify(self) -> None:
        """A submission arrived: wake a waiting grader now instead of at its next poll."""
        self.wake.set()

    def recover(self) -> None:
        """After a restart: a running submission whose result the gradebook already holds is
        finished from it; any other goes back in line (it is graded again from its files)."""
        from .gradebook import load_results

        for sub in self.queue.running():
            recorded = {
                r.student: r
                for r in load_results(self.course.gradebook_url, sub.assignment)
                if r.details.get("submission") == sub.id
            }
            result = recorded.get(sub.student)
            if result is not None:
                self._finish(sub, result)
                log.info("recovered %s: its result was recorded before the restart", sub.id)
            else:
                self.queue.requeue(sub.id, "the service restarted while grading; graded again")
                log.info("requeued %s: the service stopped while grading it", sub.id)

    # --- grading --------------------------------------------------------------------------

    def _loop(self, slot: tuple[int, ...], worker: str) -> None:
        while not self.stopping.is_set():
            try:
                sub = self.queue.claim(worker)
            except Exception:  # the database is briefly unavailable: try again
                log.exception("could not take the next submission")
                sub = None
            if sub is None:
                self.wake.wait(self.poll_s)
                self.wake.clear()
                continue
            self.grade(sub, slot)

    def grade(self, sub: Submission, slot: tuple[int, ...] = ()) -> None:
        """Grade one claimed submission, record it and write its page; a grader failure
        puts it back in line (or, after the last try, records the failure)."""
        from .gradebook import record
        from .schedule import run_jobs

        results: list[SubmissionResult] = []
        try:
            prepared = self.prepare(sub.assignment)
            job = self._job(sub, prepared)

            def keep(result: SubmissionResult) -> None:
                tagged = dataclasses.replace(
                    result, details={**dict(result.details), "submission": sub.id}
                )
                results.append(record(self.course.gradebook_url, tagged))

            run_jobs(
                [job],
                record=keep,
                workers=1,
                backend=self.backend,
                scheduler=self.scheduler,
                gpus=list(slot),
                per_gpu=1,
                prestart_evaluator=self.prestart_evaluator,
            )
        except Exception as exc:
            log.exception("grading %s failed", sub.id)
            self._grader_failed(sub, f"the grader failed ({type(exc).__name__}: {exc})")
            return
        if not results:
            self._grader_failed(sub, "the grader returned no result")
            return
        result = results[0]
        if result.status in GRADER_FAULTS and sub.attempts < MAX_ATTEMPTS:
            self.queue.requeue(sub.id, f"retrying after a grader failure: {result.message}")
            self.wake.set()
            return
        self._finish(sub, result)

    def _grader_failed(self, sub: Submission, message: str) -> None:
        if sub.attempts < MAX_ATTEMPTS:
            self.queue.requeue(sub.id, f"retrying after a grader failure: {message}")
            time.sleep(min(5.0, 0.5 * sub.attempts))
            return
        self.queue.finish(
            sub.id, status="error", score=None, max_score=None, message=message, grader_fault=True
        )

    def _finish(self, sub: Submission, result: SubmissionResult) -> None:
        try:
            self.write_page(sub, result)
        except Exception:  # the verdict stands without its page; the log says why
            log.exception("the feedback page of %s could not be written", sub.id)
        self.queue.finish(
            sub.id,
            status=result.status,
            score=result.score,
            max_score=result.max_score,
            message=result.message,
            grader_fault=result.status in GRADER_FAULTS,
        )
        if self.on_finish is not None:
            done = self.queue.get(sub.id)
            if done is not None:
                self.on_finish(done)

    def prepare(self, assignment: str) -> _Prepared:
        """The assignment's config and source index, read again when ``source/`` changed
        (and registered in the gradebook then, as ``grade`` does)."""
        from . import gradebook
        from .release import fingerprint as assignment_fingerprint
        from .release import source_index

        stamp = _stamp(self.course.source(assignment))
        with self._lock:
            prepared = self._prepared.get(assignment)
            if prepared is not None and prepared.stamp == stamp:
                return prepared
            config = load_assignment(self.course, assignment)
            index = source_index(self.course, config)
            gradebook.register_assignment(self.course.gradebook_url, config, index)
            prepared = _Prepared(stamp, config, index, assignment_fingerprint(index, config))
            self._prepared[assignment] = prepared
            return prepared

    def _job(self, sub: Submission, prepared: _Prepared) -> Any:
        from .grade import fingerprint_submission
        from .job import require_data

        folder = self.course.submitted(sub.student, sub.assignment)
        place_submission(uploads(self.course) / sub.id, folder, sub.received_at)
        require_data(self.course, prepared.config)
        return new_job(
            self.course,
            prepared.config,
            prepared.index,
            student=sub.student,
            submission=folder,
            autograded=self.course.autograded(sub.student, sub.assignment),
            fingerprint=fingerprint_submission(folder, prepared.fingerprint, self.settings),
            settings=self.settings,
        )

    def write_page(self, sub: Submission, result: SubmissionResult) -> Path:
        """The submission's feedback page (the page ``autograder feedback`` writes), kept
        under its id; ``feedback/<student>/<assignment>/`` gets the same page."""
        from .feedback import ReleasedSources, render_feedback
        from .pages import write_page

        prepared = self.prepare(sub.assignment)
        with self._lock:
            if prepared.sources is None:
                prepared.sources = ReleasedSources(self.course, prepared.config)
        html = render_feedback(
            result, course=self.course, config=prepared.config, sources=prepared.sources
        )
        digest = page_digest(result)
        write_page(self.course.feedback(sub.student, sub.assignment) / "index.html", html)
        path = write_page(pages(self.course) / f"{sub.id}.html", html)
        (pages(self.course) / f"{sub.id}.json").write_text(json.dumps({"digest": digest}))
        return path


def page_digest(result: SubmissionResult) -> str:
    """What a feedback page shows of the scores: a page whose digest differs from the
    gradebook's current one (a grader changed a score or comment) is written again."""
    import hashlib

    items = [(i.id, i.notebook, i.score, i.max_score, i.message) for i in result.items]
    return hashlib.sha256(json.dumps([result.status, items]).encode()).hexdigest()


def place_submission(stored: Path, folder: Path, received_at: float) -> None:
    """Put the stored files of a submission in ``submitted/<student>/<assignment>/``, replacing
    what was there in one rename, with nbgrader's ``timestamp.txt`` of its arrival."""
    from datetime import UTC, datetime

    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = folder.with_name(f".{folder.name}.incoming")
    old = folder.with_name(f".{folder.name}.old")
    for leftover in (fresh, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(stored, fresh)
    stamp = datetime.fromtimestamp(received_at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    (fresh / "timestamp.txt").write_text(stamp + "\n")
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
