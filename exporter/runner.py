"""Run checks under a time budget, serve recent results from cache, and never let one
check's failure escape: every run ends as a CheckResult."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from vigil.exporter.base import Check, CheckError, CheckResult, Finding, Severity

from vigil.config import ConfigError

__all__ = ["CheckRunner", "run_check", "safe_error"]

log = logging.getLogger("vigil.exporter")

# Checks get this share of the budget for their own deadlines; the rest is the margin before
# the hard cancel, so a check can still report which probe ran out of time.
INNER_SHARE = 0.9


def safe_error(exc: BaseException) -> str:
    """Text for a failed check: a CheckError's message, otherwise only the exception's type
    (a foreign exception's message may quote a secret value)."""
    if isinstance(exc, (CheckError, ConfigError)):  # both are written never to hold values
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"unexpected {exc.__class__.__name__} (see the exporter's debug log for where)"


def _budget(check: Check, timeout: float) -> float:
    cap = getattr(check, "timeout", None)
    return min(timeout, cap) if cap else timeout


async def run_check(check: Check, timeout: float) -> CheckResult:
    """Run one check with a deadline; failures and timeouts become success=False results."""
    budget = _budget(check, timeout)
    start = time.perf_counter()
    stamp = time.time()
    try:
        result = await asyncio.wait_for(check(budget * INNER_SHARE), budget)
        result.success = result.success and not result.error
    except TimeoutError:
        result = CheckResult(
            check.target, check.name, success=False, error=f"timed out after {budget:.2f}s"
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug(
            "check %s/%s raised %s",
            check.target,
            check.name,
            exc.__class__.__name__,
            exc_info=not isinstance(exc, CheckError),
        )
        result = CheckResult(check.target, check.name, success=False, error=safe_error(exc))
    result.target, result.check = check.target, check.name
    result.duration_seconds = time.perf_counter() - start
    result.timestamp = stamp
    if not result.success:
        result.findings = [
            Finding(
                "check_failed",
                Severity.CRITICAL,
                check.name,
                f"the {check.name} check could not run: {result.error}",
                "fix the target's reachability or the check's configuration",
            )
        ]
        result.samples = {}
    return result


def _log_transition(check: Check, before: CheckResult | None, after: CheckResult) -> None:
    """Log when a check starts failing, changes its reason, or recovers; at 1 s scrape
    intervals a line per failed run would drown the log."""
    if not after.success:
        changed = before is None or before.success or before.error != after.error
        log.log(
            logging.WARNING if changed else logging.DEBUG,
            "check %s/%s failed: %s",
            check.target,
            check.name,
            after.error,
        )
    elif before is not None and not before.success:
        log.info("check %s/%s recovered", check.target, check.name)


@dataclass
class _Slot:
    check: Check
    result: CheckResult | None = None
    finished_at: float = 0.0  # monotonic
    task: asyncio.Task[CheckResult] | None = None
    cached: bool = False  # the latest refresh served this slot from cache


class CheckRunner:
    """Owns the latest result of each check; `refresh(timeout)` brings them up to date."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self.slots = [_Slot(c) for c in checks]
        self.runs: Counter[tuple[str, str]] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.scrapes = 0
        self.last_refresh_seconds = 0.0

    async def refresh(self, timeout: float) -> list[CheckResult]:
        """Run every check whose min_interval has passed (concurrently); keep the others."""
        start = time.perf_counter()
        self.scrapes += 1
        now = time.monotonic()
        waits = []
        for slot in self.slots:
            fresh = slot.result is not None and now - slot.finished_at < slot.check.min_interval
            slot.cached = fresh
            if not fresh:
                waits.append(self._run(slot, timeout))
        if waits:
            await asyncio.gather(*waits)
        self.last_refresh_seconds = time.perf_counter() - start
        return self.results()

    async def _run(self, slot: _Slot, timeout: float) -> None:
        # Single flight: a scrape that arrives while the check runs waits for that run.
        if slot.task is None or slot.task.done():
            slot.task = asyncio.ensure_future(run_check(slot.check, timeout))
            owner = True
        else:
            owner = False
        try:
            result = await asyncio.wait_for(asyncio.shield(slot.task), timeout + 0.5)
        except TimeoutError:
            result = CheckResult(
                slot.check.target,
                slot.check.name,
                success=False,
                error="an earlier run of this check is still in progress",
                timestamp=time.time(),
            )
        if owner:
            _log_transition(slot.check, slot.result, result)
        if owner or slot.result is None or result.timestamp > slot.result.timestamp:
            if owner:
                key = (slot.check.target, slot.check.name)
                self.runs[key] += 1
                if not result.success:
                    self.failures[key] += 1
            slot.result = result
            slot.finished_at = time.monotonic()

    def results(self) -> list[CheckResult]:
        return [s.result for s in self.slots if s.result is not None]

    def cached_keys(self) -> set[tuple[str, str]]:
        return {(s.check.target, s.check.name) for s in self.slots if s.cached}

    async def close(self) -> None:
        """Cancel runs in flight, then let checks release what they keep (sessions)."""
        for slot in self.slots:
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await slot.task
        for slot in self.slots:
            aclose = getattr(slot.check, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
