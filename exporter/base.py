"""The shapes every exporter check shares: findings, results and the check protocol.

Both the scrape-time collector and `vigil validate` consume CheckResult, so a check is
written once and serves the metrics and the deploy gate alike.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["SEVERITY_ORDER", "Check", "CheckError", "CheckResult", "Finding", "Severity"]


class Severity(str, enum.Enum):
    """How urgent a finding is: critical pages, warning queues, info is context."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


SEVERITY_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@dataclass(frozen=True)
class Finding:
    """One problem a check found. `subject` names the object (origin+method, table, variable).

    Never put a secret value into any field: findings reach metrics, logs and reports.
    """

    rule: str
    severity: Severity
    subject: str
    message: str
    fix: str = ""
    location: str = ""  # file:line for code references, URL for endpoints


@dataclass
class CheckResult:
    """What one run of one check against one target produced."""

    target: str
    check: str
    success: bool  # the check ran to completion (findings or not)
    duration_seconds: float = 0.0
    timestamp: float = 0.0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""  # why the check could not run, when success is False
    # extra per-check samples: metric name -> list of (labels, value)
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def add_sample(self, metric: str, labels: dict[str, str], value: float) -> None:
        self.samples.setdefault(metric, []).append((labels, value))


class Check(Protocol):
    """A check bound to its target's config: `await check(timeout)` -> CheckResult."""

    name: str
    target: str
    min_interval: float

    def __call__(self, timeout: float) -> Awaitable[CheckResult]: ...


CheckFactory = Callable[..., Check]


class CheckError(Exception):
    """A check could not run. Its message is shown in metrics and reports, so it must never
    carry a secret value; any other exception type is reported by class name only."""
