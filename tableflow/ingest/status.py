"""What a table's worker reports: read by the management API, metrics and logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

State = Literal["starting", "running", "paused", "suspended", "failed", "stopped"]


@dataclass(frozen=True)
class ErrorInfo:
    message: str
    at: datetime
    partition: int | None = None
    offset: int | None = None


@dataclass
class TableStatus:
    """Counters since this process started; positions are the table's, read back after each commit."""

    identifier: str
    topic: str
    state: State = "starting"
    committed: dict[int, int] = field(default_factory=dict)
    records_total: int = 0
    bytes_total: int = 0
    dlq_records_total: int = 0
    skipped_total: int = 0
    commits_total: int = 0
    last_commit_at: datetime | None = None
    last_commit_duration_s: float | None = None
    last_snapshot_id: int | None = None
    last_error: ErrorInfo | None = None
