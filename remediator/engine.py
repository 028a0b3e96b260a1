"""Run procedures for incidents: safety checks, claiming, steps, verification, rollback, escalation.

Exactly-once across replicas comes from the store: the dedup constraint decides which replica
creates an incident, and `Store.claim` (a conditional open -> remediating update under an
advisory lock on PostgreSQL) decides which replica runs it. Work stops when the incident
leaves `remediating` (an alert resolved on any replica), seen through the heartbeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential
from vigil.remediator.actions import (
    ActionContext,
    ActionFailed,
    Cancelled,
    describe_step,
    expire_silences,
    run_step,
    step_name,
)
from vigil.remediator.breaker import Breakers
from vigil.remediator.config import Procedure, RemediatorConfig
from vigil.remediator.intelligence import Intelligence
from vigil.remediator.metrics import RemediatorMetrics
from vigil.remediator.store import Store, store_unavailable, utcnow
from vigil.remediator.templating import render

__all__ = ["Engine"]

log = logging.getLogger("vigil.remediator.engine")
T = TypeVar("T")


class Engine:
    def __init__(self, config: RemediatorConfig, store: Store, metrics: RemediatorMetrics,
                 session: aiohttp.ClientSession, replica: str, *, heartbeat_interval: float = 1.0,
                 sweep_interval: float = 5.0) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.session = session
        self.replica = replica
        self.actor = f"remediator:{replica}"
        self.heartbeat_interval = heartbeat_interval
        self.sweep_interval = sweep_interval
        self.procs = {p.name: p for p in config.procedures}
        self.global_slots = asyncio.Semaphore(config.max_concurrent)
        self.proc_slots = {p.name: asyncio.Semaphore(p.max_concurrent) for p in config.procedures}
        self.paused = config.paused
        self.paused_procedures: set[str] = set()  # paused one by one (the console, the API)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stops: dict[int, asyncio.Event] = {}
        self.running: set[int] = set()
        self._considering: set[int] = set()
        self._noted: dict[int, str] = {}  # incident -> kind of skip already recorded
        self._target_locks: dict[str, asyncio.Lock] = {}
        self.breakers = Breakers(on_change=lambda name, v: metrics.breaker.labels(name).set(v))
        # vigil_incidents_open, read from the store off the event loop (a scrape must not
        # wait on the database); None until the first successful read
        self.open_count: int | None = None
        self._refreshing = False
        self._refresh_again = False
        self._db_calls = 0
        # correlation, root-cause ranking, recommendations (docs/incidents.md)
        self.intel = Intelligence(config, store, session) if config.intelligence.enabled else None

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # counted until the thread returns: a cancelled task does not stop its thread, and
        # stop() lets those calls finish before the store is disposed
        call = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
        self._db_calls += 1
        call.add_done_callback(self._db_call_done)
        return await asyncio.shield(call)

    async def persist(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store write that records what a run already did: retried across a store outage
        (backoff up to 5 s) until it lands or the engine stops, because losing it would
        leave the attempt `running` and the incident unresolved after its steps took effect.
        Writes that are safe to repeat only (updates by id, conditional transitions)."""
        async for attempt in AsyncRetrying(
                retry=retry_if_exception(store_unavailable), wait=wait_exponential(0.2, max=5),
                before_sleep=lambda state: log.warning(
                    "store unavailable (%s); retrying a run's record",
                    type(state.outcome.exception()).__name__ if state.outcome else "?"),
                reraise=True):
            with attempt:
                return await self.db(fn, *args, **kwargs)
        raise AssertionError("unreachable")  # AsyncRetrying either returns or raises

    def _db_call_done(self, call: asyncio.Future[Any]) -> None:
        self._db_calls -= 1
        if not call.cancelled():
            call.exception()  # retrieved: an abandoned call's error is not "never retrieved"

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        stored = await self.db(self.store.paused)
        if stored is None:
            if self.config.paused:
                await self.db(self.store.set_paused, True, self.actor)
        else:
            self.paused = stored
        self.paused_procedures = await self.db(self.store.paused_procedures)
        await self.reconcile()
        await self.refresh_open_count()

    async def stop(self) -> None:
        if self.intel is not None:
            await self.intel.stop()
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for _ in range(100):  # store calls of cancelled tasks still run in threads: let them end
            if self._db_calls <= 0:
                break
            await asyncio.sleep(0.05)

    async def sweep_forever(self) -> None:
        """Pick up open incidents: after a cooldown, a resume, a crash, or another replica's ingest."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.warning("sweep failed", exc_info=True)

    async def refresh_open_count(self) -> None:
        """Re-read the count; a call during a read makes that read run once more."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        try:
            self._refresh_again = True
            while self._refresh_again:
                self._refresh_again = False
                self.open_count = await self.db(self.store.count_active_incidents)
        except Exception:  # noqa: BLE001 - keep the last value through a store outage
            log.warning("cannot count open incidents")
        finally:
            self._refreshing = False

    async def sweep(self) -> None:
        await self.refresh_open_count()
        await self.reconcile(own=False)
        stored = await self.db(self.store.paused)
        if stored is not None:
            self.paused = stored
        self.paused_procedures = await self.db(self.store.paused_procedures)
        if self.intel is not None:
            try:
                await self.intel.sweep()
            except Exception:
                log.warning("intelligence sweep failed", exc_info=True)
        for incident_id in await self.db(self.store.open_incidents):
            await self.consider(incident_id)

    async def admit(self, new: list[int], escalate: list[int]) -> None:
        """Correlate freshly stored incidents, then act: consider the open ones, escalate the rest.

        Correlation is one short transaction per incident; a group with several members is
        ranked (Prometheus evidence) before its members are considered, a lone incident is
        considered at once.
        """
        again: set[int] = set()
        if self.intel is not None:
            try:
                again = await self.intel.correlate([*new, *escalate])
            except Exception:
                log.exception("correlation failed; acting on the incidents uncorrelated")
        await asyncio.gather(*(self.consider(i) for i in [*new, *sorted(again - set(new))]),
                             *(self.escalate(i, "") for i in escalate))

    # --- deciding --------------------------------------------------------------------------------

    def cancel(self, incident_id: int, reason: str = "alert resolved") -> None:
        """Tell work for this incident to stop: drop it from the queue, or signal the run."""
        stop = self.stops.get(incident_id)
        if stop is not None:
            stop.set()
        task = self.tasks.get(incident_id)
        if task is not None and incident_id not in self.running:
            task.cancel()

    async def consider(self, incident_id: int, *, ignore_cooldown: bool = False) -> None:
        if incident_id in self.tasks or incident_id in self._considering:
            return
        self._considering.add(incident_id)
        try:
            await self._consider(incident_id, ignore_cooldown)
        finally:
            self._considering.discard(incident_id)

    async def _note_skip(self, inc: dict[str, Any], proc: Procedure, kind: str, reason: str) -> None:
        """Record a skip once per incident and kind (the sweeper will look again later)."""
        if self._noted.get(inc["id"]) == kind:
            return
        self._noted[inc["id"]] = kind
        self.metrics.attempts.labels(proc.name, "skipped").inc()
        await self.db(self.store.set_reason, inc["id"], reason)
        await self.db(self.store.create_attempt, inc["id"], proc.name, inc["target"] or "",
                      "skipped", self.replica, reason=reason)

    async def _consider(self, incident_id: int, ignore_cooldown: bool) -> None:
        got = await self.db(self.store.incident_with_alert, incident_id)
        if got is None:
            return
        inc, alert = got
        if inc["state"] != "open" or inc["procedure"] is None or alert["status"] != "firing":
            return
        proc = self.procs.get(inc["procedure"])
        if proc is None:
            reason = f"procedure {inc['procedure']!r} is no longer configured"
            if await self.db(self.store.transition, incident_id, ("open",), "escalated",
                             reason=reason, actor=self.actor):
                await self.escalate(incident_id, reason)
            return
        if self.intel is not None:
            try:
                if await self.intel.gate(inc):
                    return  # a symptom waiting for its root cause (the sweeper looks again)
            except Exception:
                log.warning("root-cause gate failed for incident %d; acting on it alone",
                            incident_id, exc_info=True)
        if self.paused:
            await self._note_skip(inc, proc, "paused", "skipped: remediation is paused (kill switch)")
            return
        if proc.name in self.paused_procedures:
            await self._note_skip(inc, proc, "paused",
                                  f"skipped: procedure {proc.name} is paused (kill switch)")
            return
        if proc.requires_approval and inc["approved_at"] is None:
            await self.db(self.store.transition, incident_id, ("open",), "awaiting_approval",
                          reason="procedure requires approval", actor=self.actor)
            return
        dry = bool(inc["dry_run"] or self.config.dry_run or proc.dry_run)
        target = inc["target"] or proc.name
        lock = self._target_locks.setdefault(target, asyncio.Lock())
        async with lock:
            verdict, info = await self.db(
                self.store.claim, incident_id, procedure=proc.name, target=target,
                cooldown=proc.cooldown, max_attempts=proc.max_attempts,
                window=proc.attempts_window, dry_run=dry, replica=self.replica,
                ignore_cooldown=ignore_cooldown)
        if verdict == "cooldown":
            until = info + timedelta(seconds=proc.cooldown)
            await self._note_skip(inc, proc, "cooldown",
                                  f"skipped: cooldown for {target} until {until.isoformat()}")
            return
        if verdict == "budget":
            reason = (f"attempt budget exhausted: {info} attempts for {target} within "
                      f"{proc.attempts_window:g}s (max {proc.max_attempts})")
            self.metrics.attempts.labels(proc.name, "skipped").inc()
            await self.db(self.store.create_attempt, incident_id, proc.name, target, "skipped",
                          self.replica, reason=reason)
            if await self.db(self.store.transition, incident_id, ("open",), "escalated",
                             reason=reason, actor=self.actor):
                await self.escalate(incident_id, reason)
            return
        if verdict != "claimed":
            return
        self._noted.pop(incident_id, None)
        stop = asyncio.Event()
        self.stops[incident_id] = stop
        task = asyncio.create_task(self._run(inc, alert, proc, int(info), dry, stop))
        self.tasks[incident_id] = task

        def done(_: asyncio.Task[None], incident_id: int = incident_id) -> None:
            self.tasks.pop(incident_id, None)
            self.stops.pop(incident_id, None)
            self.running.discard(incident_id)

        task.add_done_callback(done)

    # --- running ---------------------------------------------------------------------------------

    async def _run(self, inc: dict[str, Any], alert: dict[str, Any], proc: Procedure,
                   attempt_id: int, dry: bool, stop: asyncio.Event) -> None:
        incident_id = inc["id"]
        # queued or running, the attempt beats: other replicas must not take it for orphaned
        beat = asyncio.create_task(self._heartbeat(attempt_id, incident_id, stop))
        try:
            # the procedure's slot first: a run waiting for it must not hold a global slot
            async with self.proc_slots[proc.name], self.global_slots:
                if stop.is_set() or self.paused or proc.name in self.paused_procedures:
                    reason = "alert resolved" if stop.is_set() else "remediation is paused"
                    await self._cancel_queued(incident_id, attempt_id, reason)
                    return
                self.running.add(incident_id)
                await self._execute(inc, alert, proc, attempt_id, dry, stop)
        except asyncio.CancelledError:
            if incident_id not in self.running:
                await asyncio.shield(self._cancel_queued(incident_id, attempt_id, "alert resolved"))
            raise
        finally:
            beat.cancel()

    async def _cancel_queued(self, incident_id: int, attempt_id: int, reason: str) -> None:
        await self.db(self.store.update_attempt, attempt_id, only_if=("queued",), state="cancelled",
                      reason=reason, finished_at=utcnow())
        await self.db(self.store.transition, incident_id, ("remediating",), "open",
                      reason=f"queued work cancelled: {reason}", actor=self.actor)

    async def _heartbeat(self, attempt_id: int, incident_id: int, stop: asyncio.Event) -> None:
        # beats until the run ends (its task is cancelled then), also after a stop: a run told
        # to stop still verifies what its steps did, and must not look orphaned meanwhile
        while True:
            try:
                state = await self.db(self.store.heartbeat, attempt_id, incident_id)
                if state != "remediating" and not stop.is_set():
                    stop.set()
            except Exception:  # noqa: BLE001 - a store blip must not kill the run
                log.warning("heartbeat failed for attempt %d", attempt_id)
            await asyncio.sleep(self.heartbeat_interval)

    async def _steps(self, steps: list[Any], ctx: ActionContext, attempt_id: int, column: str
                     ) -> tuple[list[dict[str, Any]], str | None]:
        """Run steps in order; stop at the first failure. Return results and the failure text."""
        results: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            t0 = time.monotonic()
            entry: dict[str, Any] = {"name": step_name(step, i), "action": step.action}
            try:
                entry["output"] = await run_step(step, ctx)
                entry["status"] = "ok"
            except Cancelled as exc:
                entry.update(status="cancelled", output=str(exc))
            except ActionFailed as exc:
                entry.update(status="failed", output=str(exc))
            except Exception as exc:
                log.exception("step %s crashed", entry["name"])
                entry.update(status="failed", output=f"internal error: {exc.__class__.__name__}")
            entry["duration_seconds"] = round(time.monotonic() - t0, 3)
            results.append(entry)
            await self.persist(self.store.update_attempt, attempt_id, **{column: list(results)})
            if entry["status"] != "ok":
                return results, f"step {entry['name']} {entry['status']}: {entry['output']}"
        return results, None

    async def _check(self, query: str) -> tuple[bool, str]:
        """One instant query: does the condition hold (a non-empty result)?"""
        assert self.config.prometheus_url
        url = f"{self.config.prometheus_url.rstrip('/')}/api/v1/query"
        try:
            async with self.session.get(url, params={"query": query},
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                body = await resp.json(content_type=None)
            if resp.status != 200 or body.get("status") != "success":
                return False, f"query failed: HTTP {resp.status} {str(body.get('error', ''))[:300]}"
            result = body["data"]["result"]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
            return False, f"query failed: {exc.__class__.__name__}"
        if result:
            return True, f"condition holds: {json.dumps(result)[:500]}"
        return False, "condition does not hold yet (empty result)"

    async def _verify(self, proc: Procedure, ctx: ActionContext) -> tuple[str, str]:
        """Poll the condition until it holds `consecutive` times or the timeout passes.

        Told to stop meanwhile (the alert resolved, which is often the fix showing, or the
        fix only hiding the symptom, as an open breaker hides a failing dependency): the
        steps already changed the system, so polling goes on, read-only, until the verdict
        or the timeout, and a fix that does not hold is still rolled back and escalated.
        """
        assert proc.verify is not None
        if not self.config.prometheus_url:
            return "failed", "prometheus_url is not configured"
        query = render(proc.verify.query, ctx.params)
        deadline = time.monotonic() + proc.verify.timeout
        streak = 0
        while True:
            ok, detail = await self._check(query)
            streak = streak + 1 if ok else 0
            if streak >= proc.verify.consecutive:
                return "passed", detail + (" (the alert resolved meanwhile)"
                                           if ctx.stop.is_set() else "")
            if time.monotonic() >= deadline:
                return "failed", f"timed out after {proc.verify.timeout:g}s: {detail}"
            if ctx.stop.is_set():
                await asyncio.sleep(proc.verify.interval)
                continue
            try:
                await ctx.sleep(proc.verify.interval)
            except Cancelled:
                log.info("%s: the alert resolved during verification; verifying on",
                         proc.name)

    async def _execute(self, inc: dict[str, Any], alert: dict[str, Any], proc: Procedure,
                       attempt_id: int, dry: bool, stop: asyncio.Event) -> None:
        incident_id = inc["id"]
        started = utcnow()
        t0 = time.monotonic()
        await self.db(self.store.update_attempt, attempt_id, state="running", started_at=started,
                      heartbeat_at=started)
        self.metrics.in_progress.inc()
        ctx = ActionContext(self.config, self.session, self.breakers,
                            {**self.config.constants, **inc["params"]},
                            dict(alert["labels"]), stop)
        final: dict[str, Any] = {}
        # the incident's next state, written after the attempt's final record
        after: tuple[str, str] | None = None
        interrupted = False
        try:
            if dry:
                steps = [{"name": step_name(s, i), "action": s.action, "status": "dry_run",
                          "output": json.dumps(describe_step(s, ctx.params, self.config)),
                          "duration_seconds": 0.0} for i, s in enumerate(proc.steps)]
                final = {"state": "dry_run", "steps": steps, "reason": "dry run: nothing was executed"}
                self.metrics.attempts.labels(proc.name, "dry_run").inc()
                after = ("open", "dry run: the procedure would have run (see the attempt)")
                return
            steps, failure = await self._steps(proc.steps, ctx, attempt_id, "steps")
            final["steps"] = steps
            if stop.is_set() and failure is not None:  # cut short: some steps never ran
                final.update(state="cancelled", reason="stopped: the alert resolved or work was paused")
                return
            if failure is None:
                if proc.verify is None:
                    final.update(verification="skipped", verification_detail="no verify condition")
                    verdict = "passed"
                else:
                    try:
                        verdict, detail = await self._verify(proc, ctx)
                    except Cancelled:
                        final.update(state="cancelled", verification=None,
                                     reason="stopped during verification: the alert resolved")
                        return
                    final.update(verification=verdict, verification_detail=detail)
                if verdict == "passed":
                    final.update(state="succeeded",
                                 reason="" if not stop.is_set() else "the alert resolved meanwhile")
                    self.metrics.attempts.labels(proc.name, "succeeded").inc()
                    after = ("resolved", "remediation verified")
                    return
                failure = f"verification failed: {final.get('verification_detail', '')}"
            # failure: roll back, then hand over to a human
            rollback: list[dict[str, Any]] = []
            if proc.rollback:
                # a run told to stop still undoes its own change (verification failed after
                # the alert resolved): the rollback gets a context that is not stopped
                undo_ctx = dataclasses.replace(ctx, stop=asyncio.Event()) if stop.is_set() else ctx
                rollback, _ = await self._steps(proc.rollback, undo_ctx, attempt_id, "rollback_steps")
                final["rollback_steps"] = rollback
            result = "rolled_back" if proc.rollback else "failed"
            final.update(state=result, reason=failure)
            self.metrics.attempts.labels(proc.name, result).inc()
            delivered = await self.escalate(incident_id, failure)
            after = ("escalated", failure) if delivered else (
                "failed", f"{failure} (no escalation delivered)")
        except asyncio.CancelledError:
            # shutting down mid-run: leave the attempt `running`, exactly as a crash would,
            # so reconciliation (this replica's next start, or any replica once the
            # heartbeat is stale) decides whether to re-run it
            interrupted = True
            raise
        finally:
            if ctx.silences:
                expired = await expire_silences(ctx)
                final.setdefault("steps", [])
                final["steps"] = list(final["steps"]) + [
                    {"name": "expire-silences", "action": "silence", "status": "ok",
                     "output": "; ".join(expired), "duration_seconds": 0.0}]
            elapsed = time.monotonic() - t0
            self.metrics.in_progress.dec()
            for engine in ctx.sql_engines.values():
                engine.dispose()
            if not interrupted:
                await self._record(proc, incident_id, attempt_id, inc, elapsed, final, after)

    async def _record(self, proc: Procedure, incident_id: int, attempt_id: int,
                      inc: dict[str, Any], elapsed: float, final: dict[str, Any],
                      after: tuple[str, str] | None) -> None:
        """Write the attempt's final record, then move the incident."""
        self.metrics.duration.labels(proc.name).observe(elapsed)
        final.setdefault("state", "failed")
        await asyncio.shield(self.persist(
            self.store.update_attempt, attempt_id, finished_at=utcnow(),
            duration_seconds=round(elapsed, 3), heartbeat_at=utcnow(), **final))
        if after is not None:
            moved = await asyncio.shield(self.persist(
                self.store.transition, incident_id, ("remediating",), after[0],
                reason=after[1], actor=self.actor))
            if moved and after[0] == "resolved":
                self.metrics.resolution.observe(
                    max(0.0, (utcnow() - inc["alert_starts_at"]).total_seconds()))

    # --- escalation and reconciliation ------------------------------------------------------------

    async def escalate(self, incident_id: int, reason: str) -> bool:
        """POST the incident to the escalation URL; True when it was delivered."""
        esc = self.config.escalation
        if esc is None:  # the incident's state and reason already say it needs a human
            return False
        got = await self.db(self.store.incident_with_alert, incident_id)
        if got is None:
            return False
        inc, alert = got
        reason = reason or inc["reason"]
        body = {"incident": incident_id, "alertname": inc["alertname"], "procedure": inc["procedure"],
                "fingerprint": inc["fingerprint"], "reason": reason, "labels": alert["labels"],
                "annotations": alert["annotations"], "source": "vigil-remediator"}
        if self.intel is not None:  # group, ranked root cause, recommended procedure
            body.update(await self.intel.escalation_extra(incident_id))
        headers = {}
        if esc.credentials:
            try:
                path = self.config.path(self.config.credentials[esc.credentials].bearer_token_file)
                headers["Authorization"] = f"Bearer {path.read_text().strip()}"
            except OSError:
                pass
        try:
            async with self.session.post(esc.url, json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=esc.timeout)) as resp:
                ok = 200 <= resp.status < 300
                status = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, status = False, exc.__class__.__name__
        await self.db(self.store.audit, self.actor, "escalation.sent" if ok else "escalation.failed",
                      incident_id, {"reason": reason, "status": status})
        return ok

    async def _still_firing(self, alert: dict[str, Any]) -> bool:
        if alert["status"] != "firing":
            return False
        base = self.config.alertmanager_url
        if not base:
            return True
        try:
            async with self.session.get(f"{base.rstrip('/')}/api/v2/alerts",
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                active = await resp.json()
            return any(a.get("fingerprint") == alert["fingerprint"] for a in active)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return True  # cannot ask Alertmanager: trust our own record

    async def reconcile(self, *, own: bool = True) -> list[tuple[int, str]]:
        """Find attempts a crash left queued/running; re-run idempotent ones, escalate the rest.

        own=True (at start-up) includes this replica's own leftovers; the sweeper passes
        own=False and only takes attempts whose heartbeat went stale (a replica that died).
        """
        done: list[tuple[int, str]] = []
        for att in await self.db(self.store.orphaned_attempts,
                                 self.replica if own else None, self.config.stale_after):
            if att.get("replica") == self.replica and att["incident_id"] in self.tasks:
                # ours and still running: its heartbeat went stale in a store outage, and
                # the run is retrying its record (persist), not orphaned
                continue
            if not await self.db(self.store.update_attempt, att["id"], only_if=("queued", "running"),
                                 state="failed", finished_at=utcnow(),
                                 reason=f"interrupted: the remediator stopped while it was {att['state']}"):
                continue
            self.metrics.attempts.labels(att["procedure"], "failed").inc()
            got = await self.db(self.store.incident_with_alert, att["incident_id"])
            if got is None:
                continue
            inc, alert = got
            proc = self.procs.get(att["procedure"])
            firing = await self._still_firing(alert)
            if proc is not None and proc.idempotent and firing:
                if await self.db(self.store.transition, inc["id"], ("remediating",), "open",
                                 reason="reconciled after a restart: re-running (idempotent)",
                                 actor=self.actor):
                    await self.consider(inc["id"], ignore_cooldown=True)
                    done.append((inc["id"], "rerun"))
            else:
                why = ("procedure is not idempotent" if proc is None or not proc.idempotent
                       else "the alert no longer fires")
                reason = f"reconciled after a restart: attempt interrupted and {why}"
                if await self.db(self.store.transition, inc["id"], ("remediating",), "escalated",
                                 reason=reason, actor=self.actor):
                    await self.escalate(inc["id"], reason)
                    done.append((inc["id"], "escalated"))
        return done
