"""The plain, picklable result of grading one submission.

A worker returns a :class:`SubmissionResult`; only the coordinator writes it to the gradebook.
``to_json`` is the contract of ``autograder results --json`` (see DESIGN.md). Data only: the
terminal table is :mod:`autograder.console`'s, the CSV export :mod:`autograder.gradebook`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

#: Every status a submission can end with. ``graded`` means the notebook ran to the end.
STATUSES: dict[str, str] = {
    "graded": "the notebook ran to the end and every item was scored",
    "timeout": "a cell or the whole notebook ran past its time limit",
    "kernel-died": "the Python kernel stopped (crash, os._exit, segfault, killed)",
    "memory": "the notebook used more memory than the limit",
    "disk": "the notebook wrote more into its work folder than the disk limit",
    "invalid-notebook": "the submitted file is not a notebook of this assignment",
    "missing": "no submission was found for this student",
    "sandbox-error": "the sandbox could not be started (a grader problem, not the student's)",
    "error": "grading failed for a reason the grader could not classify",
}

#: Item kinds: nbgrader test cells, answers graded by hand (``grade`` + ``solution`` cells),
#: nbgrader tasks (``task`` cells, graded by hand), held-out accuracy, Kaggle CSV.
ITEM_KINDS = ("test", "manual", "task", "accuracy", "csv")
#: The kinds a human grades: no pass rate, and "waiting for a grader" until someone does.
HAND_GRADED_KINDS = ("manual", "task")
#: How an answer or task nobody has graded yet is described.
WAITING = "waiting for a grader"


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """The score of one gradable item of a submission."""

    id: str
    kind: str
    score: float
    max_score: float
    passed: bool
    message: str
    #: The notebook the item belongs to ("" for checks that belong to the assignment).
    notebook: str = ""
    #: True for answers nbgrader leaves to a human (score stays 0 until graded by hand).
    needs_manual_grade: bool = False
    #: Extra numbers for feedback and the leaderboard (accuracy counts, CSV scores...).
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: The score a grader entered in the gradebook (formgrader), which overrides the
    #: automatic one; None when nobody did. Filled in when results are read back.
    manual_score: float | None = None
    #: The grader's comment on this item (nbgrader's ``manual_comment``), "" when none.
    comment: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ITEM_KINDS:
            raise ValueError(f"unknown item kind {self.kind!r}; expected one of {ITEM_KINDS}")

    @property
    def hand_graded(self) -> bool:
        """True for the kinds a human grades (answers and tasks)."""
        return self.kind in HAND_GRADED_KINDS

    def to_json(self) -> dict[str, Any]:
        """The item as ``results --json`` prints it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "score": self.score,
            "max_score": self.max_score,
            "passed": self.passed,
            "message": self.message,
        }


@dataclasses.dataclass(frozen=True)
class SubmissionResult:
    """Everything the coordinator needs to record one graded submission."""

    student: str
    assignment: str
    status: str
    items: tuple[ItemResult, ...]
    #: One sentence for the whole submission ("" when graded without trouble).
    message: str = ""
    #: Fingerprint of the submitted files: an unchanged submission is not graded again.
    fingerprint: str = ""
    #: Where it ran: "cpu" or "cuda:N".
    device: str = "cpu"
    duration_s: float = 0.0
    #: When the student submitted (ISO 8601, UTC), from nbgrader's timestamp.txt if present.
    submitted_at: str | None = None
    #: Folder holding the executed notebook(s) and collected artifacts.
    autograded_dir: str = ""
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {list(STATUSES)}")

    @property
    def score(self) -> float:
        return round(sum(item.score for item in self.items), 6)

    @property
    def max_score(self) -> float:
        return round(sum(item.max_score for item in self.items), 6)

    def notebook_totals(self) -> list[dict[str, Any]]:
        """Score and maximum of each notebook's items (``name`` "" for assignment-wide
        checks), in the order the notebooks first appear."""
        totals: dict[str, list[float]] = {}
        for item in self.items:
            pair = totals.setdefault(item.notebook, [0.0, 0.0])
            pair[0] += item.score
            pair[1] += item.max_score
        return [
            {"name": name, "score": round(score, 6), "max_score": round(maximum, 6)}
            for name, (score, maximum) in totals.items()
        ]

    @property
    def flags(self) -> list[str]:
        """What the instructor should look at: the notebook changed how IPython runs code
        (its tests that ran after it score 0). Empty for an ordinary submission."""
        flags = self.details.get("flags") if isinstance(self.details, Mapping) else None
        return [str(f) for f in flags] if isinstance(flags, list) else []

    def item(self, item_id: str) -> ItemResult:
        """The item called ``item_id``; KeyError names the ones there are."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(f"no item {item_id!r}; items are {[i.id for i in self.items]}")

    def to_json(self) -> dict[str, Any]:
        """The submission as ``results --json`` prints it (DESIGN.md schema, then extras)."""
        return {
            "student": self.student,
            "assignment": self.assignment,
            "status": self.status,
            "score": self.score,
            "max_score": self.max_score,
            "items": [item.to_json() for item in self.items],
            "message": self.message,
            "device": self.device,
            "duration_s": round(self.duration_s, 3),
            "submitted_at": self.submitted_at,
            "notebooks": self.notebook_totals(),
            "flags": self.flags,
            # What the participant's page says beside the items (files left out, a handed-in
            # CSV's report, a notebook graded under another name...).
            "notes": [str(n) for n in self.details.get("notes", ()) if isinstance(n, str)],
        }

    def to_record(self) -> dict[str, Any]:
        """Every field, for storage; :meth:`from_record` reads it back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SubmissionResult:
        data = dict(record)
        data["items"] = tuple(ItemResult(**item) for item in data.get("items", ()))
        return cls(**data)

    def with_items(self, items: Sequence[ItemResult], **changes: Any) -> SubmissionResult:
        """A copy with other items (and any other field changed)."""
        return dataclasses.replace(self, items=tuple(items), **changes)
