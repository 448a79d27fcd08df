"""What an import did (or, in a dry run, would do): the same summary either way."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .records import MALFORMED

MAX_PROBLEMS_KEPT = 200


@dataclass
class Summary:
    dry_run: bool
    files: int = 0
    bad_files: int = 0
    records: int = 0
    added: int = 0
    added_counted: int = 0
    confirmed: int = 0
    duplicates: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_ms: int | None = None
    last_ms: int | None = None
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    interrupted: str | None = None

    @property
    def malformed(self) -> bool:
        """A file or record could not be read: the rest was imported, the exit code says so."""
        return self.bad_files > 0 or self.skipped[MALFORMED] > 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(text)

    def span(self, started_at: int, ended_at: int) -> None:
        self.first_ms = started_at if self.first_ms is None else min(self.first_ms, started_at)
        self.last_ms = ended_at if self.last_ms is None else max(self.last_ms, ended_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "files": self.files, "bad_files": self.bad_files,
            "records": self.records, "added": self.added, "added_counted": self.added_counted,
            "confirmed": self.confirmed, "duplicates": self.duplicates,
            "skipped": dict(sorted(self.skipped.items())), "first": _day(self.first_ms),
            "last": _day(self.last_ms), "problems": self.problem_count, "interrupted": self.interrupted,
        }

    def render(self) -> str:
        title = "dry run: nothing was written" if self.dry_run else "import finished"
        if self.interrupted:
            title = f"import INTERRUPTED ({self.interrupted}): the lines below were written; run it again to finish"
        verb = "plays to add:" if self.dry_run else "plays added:"
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items()) if n)
        lines = [
            title,
            f"{'files:':<14}{self.files} read" + (f", {self.bad_files} unreadable" if self.bad_files else ""),
            f"{'records:':<14}{self.records}",
            f"{verb:<14}{self.added} ({self.added_counted} counted)",
            f"{'confirmed:':<14}{self.confirmed} (already recorded by the poller or backfill: not added again)",
            f"{'duplicates:':<14}{self.duplicates} (already stored, or repeated in the export)",
            f"{'skipped:':<14}{sum(self.skipped.values())}" + (f" ({skipped})" if skipped else ""),
            f"{'date range:':<14}" + (f"{_day(self.first_ms)} .. {_day(self.last_ms)} (UTC)"
                                      if self.first_ms is not None else "none"),
        ]
        return "\n".join(lines)

    def render_problems(self, limit: int = 20) -> list[str]:
        shown = [f"warning: {p}" for p in self.problems[:limit]]
        if self.problem_count > len(shown):
            shown.append(f"warning: ... and {self.problem_count - len(shown)} more")
        return shown


def _day(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")
