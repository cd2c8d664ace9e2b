"""The reports :class:`authmw.storage.migration.StorageMigration` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["KindReport", "MigrationProgress", "MigrationReport"]

_SAMPLE = 20  # ids kept per report for conflicts and failed verifications
_COUNTS = (
    "read",
    "copied",
    "skipped_expired",
    "already_present",
    "mismatched",
    "overwritten",
    "verified",
    "verify_failed",
)


@dataclass(slots=True)
class KindReport:
    """What happened to one kind of record (``users``, ``tokens``, ``sessions``, ``kv``,
    ``audit``).

    ``read``: records the source handed out. ``copied``: written to the target (in a dry run:
    would be). ``skipped_expired``: expired before they could be written. ``already_present``:
    the target held an equal record. ``mismatched``: the target held a different record under
    the same key (a conflict; ``conflicts`` samples their ids, which are public selectors,
    never secrets). ``overwritten``: conflicts replaced because ``overwrite`` was on.
    ``verified``/``verify_failed``: read-back results with ``verify_data``.
    """

    kind: str
    dry_run: bool = False
    read: int = 0
    copied: int = 0
    skipped_expired: int = 0
    already_present: int = 0
    mismatched: int = 0
    overwritten: int = 0
    verified: int = 0
    verify_failed: int = 0
    duration: float = 0.0
    conflicts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def conflict(self, key: str) -> None:
        """Count a conflicting record (and keep its id in the sample)."""
        self.mismatched += 1
        if len(self.conflicts) < _SAMPLE:
            self.conflicts.append(key)

    def verify_fail(self, key: str) -> None:
        """Count a record whose read-back differs (and keep its id in the sample)."""
        self.verify_failed += 1
        if len(self.failed) < _SAMPLE:
            self.failed.append(key)

    @property
    def ok(self) -> bool:
        """True when nothing conflicts (or every conflict was overwritten) and every
        read-back matched."""
        return self.mismatched == self.overwritten and self.verify_failed == 0

    @property
    def rate(self) -> float:
        """Records handled per second."""
        return self.read / self.duration if self.duration > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out: dict[str, Any] = {"kind": self.kind}
        out.update((name, getattr(self, name)) for name in _COUNTS)
        out.update(
            duration=round(self.duration, 3),
            records_per_second=round(self.rate, 1),
            ok=self.ok,
            conflicts=list(self.conflicts),
            failed=list(self.failed),
        )
        return out


@dataclass(slots=True)
class MigrationReport:
    """Every kind's :class:`KindReport`, in the order they ran."""

    source: str
    target: str
    dry_run: bool = False
    duration: float = 0.0
    kinds: dict[str, KindReport] = field(default_factory=dict)

    def total(self, count: str) -> int:
        """One count summed over every kind (e.g. ``total("copied")``)."""
        return sum(int(getattr(report, count)) for report in self.kinds.values())

    @property
    def ok(self) -> bool:
        """True when every kind is ok."""
        return all(report.ok for report in self.kinds.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``authmw migrate --json`` prints)."""
        read = self.total("read")
        return {
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "duration": round(self.duration, 3),
            "records_per_second": round(read / self.duration, 1) if self.duration else 0.0,
            "totals": {name: self.total(name) for name in _COUNTS},
            "kinds": {name: report.to_dict() for name, report in self.kinds.items()},
        }

    def summary(self) -> str:
        """A plain-text table, one row per kind and a total row."""
        head = (
            "kind",
            "read",
            "copied",
            "expired",
            "present",
            "conflicts",
            "verified",
            "failed",
            "seconds",
        )
        rows = [head]
        for r in [*self.kinds.values(), None]:
            if r is None:
                values = [self.total(c) for c in _COUNTS]
                name, seconds = "total", self.duration
                read, copied, expired, present, mismatched, _, verified, failed = values
            else:
                name, seconds = r.kind, r.duration
                read, copied, expired, present, mismatched, verified, failed = (
                    r.read,
                    r.copied,
                    r.skipped_expired,
                    r.already_present,
                    r.mismatched,
                    r.verified,
                    r.verify_failed,
                )
            rows.append(
                (
                    name,
                    str(read),
                    str(copied),
                    str(expired),
                    str(present),
                    str(mismatched),
                    str(verified),
                    str(failed),
                    f"{seconds:.2f}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
        if self.dry_run:
            lines.append("dry run: nothing was written ('copied' counts what would be)")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class MigrationProgress:
    """Passed to the progress callback after each batch.

    ``kind``: the kind being moved; ``done``: its records handled so far; ``total``: how many
    the source reported at the start (None when unknown); ``batches``: batches done;
    ``report``: the kind's report so far.
    """

    kind: str
    done: int
    total: int | None
    batches: int
    report: KindReport
