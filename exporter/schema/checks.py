"""The schema checks as exporter Checks: `schema`, `schema_lint`, `schema_drift`, `code_references`.

All blocking work (catalog queries, file scans) runs in a worker thread, awaited with the
caller's timeout. The checks of one target share one inspection: concurrent runs join the
inspection in flight, and a result younger than a few seconds is reused. On timeout the
PostgreSQL query is cancelled server-side, and a hung database never stacks up threads: a new
run joins the inspection still in flight instead of starting another.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from vigil.exporter.base import CheckResult, Finding, Severity

from .config import SchemaCheckConfig
from .redact import Redactor

__all__ = ["CHECK_NAMES", "SchemaCheck", "SnapshotProvider", "make_schema_checks",
           "require_schemas"]

CHECK_NAMES = ("schema", "schema_lint", "schema_drift", "code_references")

# how long a finished inspection is reused by the other checks of the same target
_REUSE_SECONDS = 5.0


class SchemaCheckError(Exception):
    """A schema check could not run; the message is safe to show (no credentials)."""


class SnapshotProvider:
    """Inspect one target database at most once at a time, and share the result."""

    def __init__(self, cfg: SchemaCheckConfig, redactor: Redactor) -> None:
        self._cfg = cfg
        self._redactor = redactor
        self._mutex = threading.Lock()
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._finished_at = 0.0
        self._cancel_hooks: list[Callable[[], None]] = []
        self._session: Any = None  # pg.PgSession kept between runs (keep_connection)
        self._session_url = ""

    def _inspect(self) -> Any:
        from .inspect import inspect_url, is_postgres

        cfg = self._cfg
        url = cfg.resolve_url()
        self._redactor.add_url(url)
        if cfg.keep_connection and is_postgres(url):
            from .pg import PgSession

            if self._session is None or self._session_url != url:
                self.close()
                self._session = PgSession(url, cfg.statement_timeout_seconds,
                                          cfg.connect_timeout_seconds)
                self._session_url = url
            snap = self._session.inspect(cfg.schemas, on_connect=self._register_cancel)
        else:
            snap = inspect_url(url, schemas=cfg.schemas,
                               statement_timeout=cfg.statement_timeout_seconds,
                               connect_timeout=cfg.connect_timeout_seconds,
                               on_connect=self._register_cancel)
        require_schemas(snap, "schemas", "live")
        return snap

    def close(self) -> None:
        """Close the kept connection, if any (safe to call at any time between runs)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _run(self, fut: concurrent.futures.Future[Any]) -> None:
        try:
            snap = self._inspect()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting check
            with self._mutex:
                self._cancel_hooks.clear()
                self._finished_at = time.monotonic()
            fut.set_exception(exc)
            return
        with self._mutex:
            self._cancel_hooks.clear()
            self._finished_at = time.monotonic()
        fut.set_result(snap)

    def _register_cancel(self, hook: Callable[[], None]) -> None:
        with self._mutex:
            self._cancel_hooks.append(hook)

    def cancel(self) -> None:
        """Cancel the query in flight (PostgreSQL); the worker thread then finishes quickly."""
        with self._mutex:
            hooks = list(self._cancel_hooks)
        for hook in hooks:
            with contextlib.suppress(Exception):  # best effort: the connection may be gone
                hook()

    def future(self) -> concurrent.futures.Future[Any]:
        """The inspection in flight, a fresh-enough finished one, or a new one."""
        with self._mutex:
            fut = self._inflight
            if fut is not None and (not fut.done() or (
                    fut.exception() is None
                    and time.monotonic() - self._finished_at < _REUSE_SECONDS)):
                return fut
            fut = concurrent.futures.Future()
            fut.set_running_or_notify_cancel()  # a running future cannot be cancelled
            self._inflight = fut
        threading.Thread(target=self._run, args=(fut,), daemon=True,
                         name="vigil-schema-inspect").start()
        return fut

    def get_sync(self, timeout: float) -> Any:
        """Blocking variant for the CLI."""
        fut = self.future()
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            self.cancel()
            raise


Work = Callable[[Any, CheckResult], None]


class SchemaCheck:
    """One schema check bound to a target: `await check(timeout)` -> CheckResult."""

    def __init__(self, name: str, target: str, cfg: SchemaCheckConfig,
                 provider: SnapshotProvider | None, work: Callable[..., None],
                 redactor: Redactor) -> None:
        self.name = name
        self.target = target
        self.min_interval = cfg.min_interval
        self._cfg = cfg
        self._provider = provider
        self._work = work
        self._redactor = redactor

    def __repr__(self) -> str:
        return f"SchemaCheck(name={self.name!r}, target={self.target!r})"

    async def __call__(self, timeout: float) -> CheckResult:
        started = time.monotonic()
        result = CheckResult(target=self.target, check=self.name, success=False,
                             timestamp=time.time())
        try:
            await asyncio.wait_for(self._run(result), timeout)
            result.success = True
        except TimeoutError:
            if self._provider is not None:
                self._provider.cancel()
            result.error = f"timed out after {timeout:g}s"
            result.findings.clear()
            result.samples.clear()
        except Exception as exc:  # noqa: BLE001 - every failure becomes success=0 + reason
            result.error = self._redactor.describe(exc)
            result.findings.clear()
            result.samples.clear()
        result.duration_seconds = time.monotonic() - started
        return result

    def close(self) -> None:
        """Release the target's kept database connection (shared by its schema checks)."""
        if self._provider is not None:
            self._provider.close()

    def run_sync(self, timeout: float) -> CheckResult:
        """Run outside an event loop (the CLI)."""
        return asyncio.run(self(timeout))

    async def _run(self, result: CheckResult) -> None:
        snapshot = None
        if self._provider is not None:
            # the inspection future is already running, so cancelling this wrapper on timeout
            # leaves it to finish for the other checks (and to be joined by the next run)
            snapshot = await asyncio.wrap_future(self._provider.future())
        # the work itself (diffing, scanning files) also stays off the event loop
        partial: CheckResult = CheckResult(target=self.target, check=self.name, success=False)
        await asyncio.to_thread(self._work, snapshot, partial)
        result.findings.extend(partial.findings)
        result.samples.update(partial.samples)


def _expected_work(target: str, cfg: SchemaCheckConfig, redactor: Redactor) -> Work:
    def work(snapshot: Any, result: CheckResult) -> None:
        from .diff import diff_snapshots
        from .sources import load_expected

        assert cfg.expected is not None
        expected = load_expected(cfg.expected, snapshot, cfg, redactor)
        findings = diff_snapshots(expected, snapshot, ignore_extra=cfg.expected.ignore_extra,
                                  privileges=cfg.expected.compare_privileges)
        result.findings.extend(findings)
        consistent = not any(f.severity in (Severity.CRITICAL, Severity.WARNING) for f in findings)
        result.add_sample("vigil_schema_consistent", {"target": target}, 1.0 if consistent else 0.0)
    return work


def _lint_work(target: str, cfg: SchemaCheckConfig) -> Work:
    def work(snapshot: Any, result: CheckResult) -> None:
        from .lint import lint_snapshot

        findings, usage = lint_snapshot(snapshot, cfg.lint)
        result.findings.extend(findings)
        for seq, percent in usage:
            result.add_sample("vigil_schema_sequence_usage_percent",
                              {"target": target, "sequence": seq}, percent)
        result.add_sample("vigil_schema_tables", {"target": target},
                          float(sum(1 for t in snapshot.tables.values() if t.kind == "table")))
    return work


def _drift_work(target: str, cfg: SchemaCheckConfig) -> Work:
    def work(snapshot: Any, result: CheckResult) -> None:
        from .fingerprint import drift_findings

        assert cfg.drift is not None
        drifted, findings = drift_findings(snapshot, cfg.drift)
        result.findings.extend(findings)
        if drifted is not None:
            result.add_sample("vigil_schema_drift", {"target": target}, 1.0 if drifted else 0.0)
    return work


def _code_work(target: str, cfg: SchemaCheckConfig) -> Work:
    cache: dict[str, Any] = {}  # unchanged files are not parsed again on the next run

    def work(snapshot: Any, result: CheckResult) -> None:
        from .codescan import reference_findings

        assert cfg.code_references is not None
        findings, stats = reference_findings(snapshot, cfg.code_references, cache)
        result.findings.extend(findings)
        result.add_sample("vigil_schema_code_references_missing", {"target": target},
                          float(stats["missing"]))
        result.add_sample("vigil_schema_code_files_scanned", {"target": target},
                          float(stats["files"]))
    return work


def require_schemas(snap: Any, key: str, which: str) -> None:
    """A schema asked for by name that does not exist is a configuration error, not an
    empty (and so "consistent") schema."""
    from vigil.config import ConfigError

    missing = getattr(snap, "missing_schemas", [])
    if missing:
        raise ConfigError(None, key, f"schema {', '.join(repr(m) for m in missing)} does not "
                          f"exist in the {which} database")


def make_schema_checks(target: str, cfg: SchemaCheckConfig) -> list[SchemaCheck]:
    """Build the schema checks a target's `schema:` block asks for (they share one inspection)."""
    redactor = Redactor()
    provider = SnapshotProvider(cfg, redactor)
    checks: list[SchemaCheck] = []
    if cfg.expected is not None:
        checks.append(SchemaCheck("schema", target, cfg, provider,
                                  _expected_work(target, cfg, redactor), redactor))
    if cfg.lint.enabled:
        checks.append(SchemaCheck("schema_lint", target, cfg, provider,
                                  _lint_work(target, cfg), redactor))
    if cfg.drift is not None:
        checks.append(SchemaCheck("schema_drift", target, cfg, provider,
                                  _drift_work(target, cfg), redactor))
    if cfg.code_references is not None:
        checks.append(SchemaCheck("code_references", target, cfg, provider,
                                  _code_work(target, cfg), redactor))
    return checks


def finding(rule: str, severity: Severity, subject: str, message: str, fix: str = "",
            location: str = "") -> Finding:
    """Shorthand used by the rule modules."""
    return Finding(rule=rule, severity=severity, subject=subject, message=message, fix=fix,
                   location=location)
