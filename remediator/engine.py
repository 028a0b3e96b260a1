"""Run procedures for incidents: safety checks, claiming, steps, verification, rollback, escalation.

Exactly-once across replicas comes from the store: the dedup constraint decides which replica
creates an incident, and `Store.claim` (a conditional open -> remediating update under an
advisory lock on PostgreSQL) decides which replica runs it. Work stops when the incident
leaves `remediating` (an alert resolved on any replica), seen through the heartbeat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
from vigil.remediator.failpoints import crash_point
from vigil.remediator.intelligence import Intelligence
from vigil.remediator.metrics import RemediatorMetrics
from vigil.remediator.store import Store, store_unavailable, utcnow
from vigil.remediator.templating import render

__all__ = ["Engine"]

log = logging.getLogger("vigil.remediator.engine")
T = TypeVar("T")
# the engine's own store threads: runs' records and claims do not queue behind the webhook's
# and correlation's calls in the default executor (min(32, cores + 4) threads); with those,
# within the store's 16 connections
ENGINE_THREADS = 8
CLAIM_BATCH = 100  # incidents claimed per transaction when a batch is admitted
SWEEP_BATCH = 2000  # open incidents a sweep considers
# the blast-radius escalation waits for the storm to settle (no new hold for QUIET seconds,
# at most SETTLE), so that its count covers the burst; one per procedure per EVERY, fleet-wide
BLAST_NOTICE_QUIET = 2.0
BLAST_NOTICE_SETTLE = 30.0
BLAST_NOTICE_EVERY = 3600.0


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
        # attempt -> (incident, stop) of every queued or running attempt of this replica:
        # one heartbeat task stamps them all (a task per attempt kept the CPU busy in a storm)
        self.beating: dict[int, tuple[int, asyncio.Event]] = {}
        self._beat_task: asyncio.Task[None] | None = None
        self._blast_holds: dict[str, float] = {}  # procedure -> monotonic time of its last hold
        self._notices: set[asyncio.Task[None]] = set()
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
        self._executor = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="vigil-engine")
        # correlation, root-cause ranking, recommendations (docs/incidents.md)
        self.intel = Intelligence(config, store, session) if config.intelligence.enabled else None

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # counted until the thread returns: a cancelled task does not stop its thread, and
        # stop() lets those calls finish before the store is disposed
        call = asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(fn, *args, **kwargs))
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
        self._beat_task = asyncio.create_task(self._heartbeat_forever())
        self.paused_procedures = await self.db(self.store.paused_procedures)
        await self.reconcile()
        await self.refresh_open_count()
        await self.refresh_stuck()

    async def stop(self) -> None:
        if self.intel is not None:
            await self.intel.stop()
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for extra in [*self._notices, *([self._beat_task] if self._beat_task else [])]:
            extra.cancel()
        await asyncio.gather(*self._notices, *([self._beat_task] if self._beat_task else []),
                             return_exceptions=True)
        for _ in range(100):  # store calls of cancelled tasks still run in threads: let them end
            if self._db_calls <= 0:
                break
            await asyncio.sleep(0.05)
        self._executor.shutdown(wait=False)

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

    async def refresh_stuck(self) -> None:
        """vigil_remediation_stuck_incidents, per configured procedure."""
        bounds = {p.name: (p.time_bound_seconds(), p.time_bound_seconds() + p.cooldown)
                  for p in self.config.procedures}
        try:
            counts = await self.db(self.store.count_stuck, bounds)
        except Exception:  # noqa: BLE001 - keep the last values through a store outage
            log.warning("cannot count stuck incidents")
            return
        for name, n in counts.items():
            self.metrics.stuck.labels(name).set(n)

    async def sweep(self) -> None:
        await self.refresh_open_count()
        await self.reconcile(own=False)
        await self.refresh_stuck()
        stored = await self.db(self.store.paused)
        if stored is not None:
            self.paused = stored
        self.paused_procedures = await self.db(self.store.paused_procedures)
        if self.intel is not None:
            try:
                await self.intel.sweep()
            except Exception:
                log.warning("intelligence sweep failed", exc_info=True)
        # a storm's incidents that waited (a group being ranked) come back here: in batches,
        # so up to SWEEP_BATCH per sweep, not one by one
        await self.consider_many(await self.db(self.store.open_incidents, SWEEP_BATCH))

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
        await asyncio.gather(self.consider_many([*new, *sorted(again - set(new))]),
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
        ready = await self._precheck(*got)
        if ready is None:
            return
        claim = self._claim_request(ready, ignore_cooldown)
        lock = self._target_locks.setdefault(claim["target"], asyncio.Lock())
        async with lock:
            verdict, info = await self.db(self.store.claim, **claim)
        await self._claimed(ready, verdict, info)

    async def consider_many(self, incident_ids: list[int]) -> None:
        """Consider a batch (a storm's admission): one read for the incidents, then claims
        in transactions of up to CLAIM_BATCH incidents instead of one per incident."""
        ids = [i for i in dict.fromkeys(incident_ids)
               if i not in self.tasks and i not in self._considering]
        self._considering.update(ids)
        try:
            groups: dict[int, Any] = {}  # the root-cause gate reads each group once per batch
            # chunk by chunk: the first runs start while the rest of a storm is still checked
            for k in range(0, len(ids), CLAIM_BATCH):
                got = await self.db(self.store.incidents_with_alerts, ids[k:k + CLAIM_BATCH])
                # the checks of a chunk run at once (each is a store read or two)
                chunk = [r for r in await asyncio.gather(
                    *(self._precheck(inc, alert, groups) for inc, alert in got)) if r is not None]
                if not chunk:
                    continue
                verdicts = await self.db(self.store.claim_many,
                                         [self._claim_request(r, False) for r in chunk])
                for ready, (verdict, info) in zip(chunk, verdicts, strict=True):
                    await self._claimed(ready, verdict, info)
        finally:
            self._considering.difference_update(ids)

    async def _precheck(self, inc: dict[str, Any], alert: dict[str, Any],
                        groups: dict[int, Any] | None = None
                        ) -> tuple[dict[str, Any], dict[str, Any], Procedure, bool, str] | None:
        """Everything before the claim: (incident, alert, procedure, dry run, target), or
        None when the incident is not to be claimed now (its reason is recorded)."""
        incident_id = inc["id"]
        if inc["state"] != "open" or inc["procedure"] is None or alert["status"] != "firing":
            return None
        proc = self.procs.get(inc["procedure"])
        if proc is None:
            reason = f"procedure {inc['procedure']!r} is no longer configured"
            if await self.db(self.store.transition, incident_id, ("open",), "escalated",
                             reason=reason, actor=self.actor):
                await self.escalate(incident_id, reason)
            return None
        if self.intel is not None:
            try:
                if await self.intel.gate(inc, groups):
                    return None  # a symptom waiting for its root cause (the sweeper looks again)
            except Exception:
                log.warning("root-cause gate failed for incident %d; acting on it alone",
                            incident_id, exc_info=True)
        if self.paused:
            await self._note_skip(inc, proc, "paused", "skipped: remediation is paused (kill switch)")
            return None
        if proc.name in self.paused_procedures:
            await self._note_skip(inc, proc, "paused",
                                  f"skipped: procedure {proc.name} is paused (kill switch)")
            return None
        if proc.requires_approval and inc["approved_at"] is None:
            await self.db(self.store.transition, incident_id, ("open",), "awaiting_approval",
                          reason="procedure requires approval", actor=self.actor)
            return None
        dry = bool(inc["dry_run"] or self.config.dry_run or proc.dry_run)
        return inc, alert, proc, dry, inc["target"] or proc.name

    def _claim_request(self, ready: tuple[dict[str, Any], dict[str, Any], Procedure, bool, str],
                       ignore_cooldown: bool) -> dict[str, Any]:
        inc, _, proc, dry, target = ready
        return {"incident_id": inc["id"], "procedure": proc.name, "target": target,
                "cooldown": proc.cooldown, "max_attempts": proc.max_attempts,
                "window": proc.attempts_window, "dry_run": dry, "replica": self.replica,
                "ignore_cooldown": ignore_cooldown,
                "blast": (proc.blast_radius.max_targets, proc.blast_radius.max_per_hour)
                if proc.blast_radius else None}

    async def _claimed(self, ready: tuple[dict[str, Any], dict[str, Any], Procedure, bool, str],
                       verdict: str, info: Any) -> None:
        """Act on a claim's verdict: run, note the cooldown, escalate a spent budget."""
        inc, alert, proc, dry, target = ready
        incident_id = inc["id"]
        if verdict == "blast":  # escalated in the claim's transaction; one notice for all
            self.metrics.blast_held.labels(proc.name).inc()
            self._hold(proc)
            return
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
        if verdict != "claimed" or incident_id in self.tasks:
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
        self.beating[attempt_id] = (incident_id, stop)
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
            self.beating.pop(attempt_id, None)

    async def _cancel_queued(self, incident_id: int, attempt_id: int, reason: str) -> None:
        await self.db(self.store.finish_attempt, attempt_id,
                      {"state": "cancelled", "reason": reason, "finished_at": utcnow()},
                      only_if=("queued",), actor=self.actor,
                      move=(incident_id, ("remediating",), "open", f"queued work cancelled: {reason}"))

    async def _heartbeat_forever(self) -> None:
        """The replica's heartbeat: every interval, one transaction stamps all its queued and
        running attempts and reads their incidents' states. It beats until a run ends, also
        after a stop: a run told to stop still verifies what its steps did, and must not
        look orphaned meanwhile."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.beating:
                try:
                    await self.beat()
                except Exception as exc:  # noqa: BLE001 - a store blip must not kill the heartbeat
                    log.warning("heartbeat failed for %d attempts (%s)", len(self.beating),
                                exc.__class__.__name__)

    async def beat(self) -> None:
        beating = dict(self.beating)
        states = await self.db(self.store.heartbeat, list(beating),
                               sorted({inc for inc, _ in beating.values()}))
        for incident_id, stop in beating.values():
            if states.get(incident_id) != "remediating" and not stop.is_set():
                stop.set()

    async def _steps(self, steps: list[Any], ctx: ActionContext, attempt_id: int, column: str,
                     *, last_ok_is_final: bool = False) -> tuple[list[dict[str, Any]], str | None]:
        """Run steps in order; stop at the first failure. Return results and the failure text.

        Each step's result is recorded as it ends, but for the last one when
        `last_ok_is_final` and it succeeds: the final record follows at once (one write
        fewer per run; a crash in between leaves the attempt `running` either way)."""
        results: list[dict[str, Any]] = []
        for i, step in enumerate(steps):
            t0 = time.monotonic()
            entry: dict[str, Any] = {"name": step_name(step, i), "action": step.action}
            try:
                entry["output"] = await run_step(step, ctx)
                entry["status"] = "ok"
                crash_point("step-returned")
            except Cancelled as exc:
                entry.update(status="cancelled", output=str(exc))
            except ActionFailed as exc:
                entry.update(status="failed", output=str(exc))
            except Exception as exc:
                log.exception("step %s crashed", entry["name"])
                entry.update(status="failed", output=f"internal error: {exc.__class__.__name__}")
            entry["duration_seconds"] = round(time.monotonic() - t0, 3)
            results.append(entry)
            if last_ok_is_final and i == len(steps) - 1 and entry["status"] == "ok":
                break  # the run's final record, next, holds these results
            await self.persist(self.store.update_attempt, attempt_id, **{column: list(results)})
            crash_point("step-recorded")
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
            steps, failure = await self._steps(proc.steps, ctx, attempt_id, "steps",
                                               last_ok_is_final=proc.verify is None)
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
            crash_point("escalation-sent")
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
        """Write the attempt's final record and move the incident, in one transaction."""
        self.metrics.duration.labels(proc.name).observe(elapsed)
        final.setdefault("state", "failed")
        crash_point("before-final-record")
        _, moved = await asyncio.shield(self.persist(
            self.store.finish_attempt, attempt_id,
            {"finished_at": utcnow(), "duration_seconds": round(elapsed, 3),
             "heartbeat_at": utcnow(), **final},
            move=None if after is None else (incident_id, ("remediating",), *after),
            actor=self.actor))
        crash_point("after-final-record")
        if moved and after is not None and after[0] == "resolved":
            self.metrics.resolution.observe(
                max(0.0, (utcnow() - inc["alert_starts_at"]).total_seconds()))

    # --- blast radius ---------------------------------------------------------------------------

    def _hold(self, proc: Procedure) -> None:
        first = proc.name not in self._blast_holds
        self._blast_holds[proc.name] = time.monotonic()
        if first:
            task = asyncio.create_task(self._blast_notice(proc))
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)

    async def _blast_notice(self, proc: Procedure) -> None:
        """Escalate once for the incidents the blast radius held, with their count."""
        started = time.monotonic()
        try:
            while True:
                quiet = time.monotonic() - self._blast_holds[proc.name]
                if quiet >= BLAST_NOTICE_QUIET or time.monotonic() - started >= BLAST_NOTICE_SETTLE:
                    break
                await asyncio.sleep(BLAST_NOTICE_QUIET - min(quiet, BLAST_NOTICE_QUIET) + 0.05)
        finally:
            self._blast_holds.pop(proc.name, None)
        taken, held, ids = await self.db(self.store.claim_blast_notice, proc.name,
                                         BLAST_NOTICE_EVERY)
        if not taken:
            log.info("blast radius of %s held more incidents; its escalation was sent within "
                     "the hour", proc.name)
            return
        reason = (f"blast radius: {held} incident(s) of procedure {proc.name} were escalated "
                  f"instead of run (limits: {proc.blast_radius})")
        log.warning("%s", reason)
        await self._send_escalation({
            "kind": "blast_radius", "procedure": proc.name, "held": held, "incidents": ids,
            "reason": reason, "source": "vigil-remediator"}, None, reason)

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
        return await self._send_escalation(body, incident_id, reason)

    async def _send_escalation(self, body: dict[str, Any], incident_id: int | None,
                               reason: str) -> bool:
        """POST one escalation body (with its credentials, or not at all); audit it."""
        esc = self.config.escalation
        assert esc is not None
        what = f"incident {incident_id}" if incident_id is not None else "blast radius"
        headers = {}
        if esc.credentials:
            # never sent without its credentials: an unreadable or empty token file fails the
            # escalation (logged and counted; the text names the file, never its content)
            path = self.config.path(self.config.credentials[esc.credentials].bearer_token_file)
            try:
                token = path.read_text().strip()
                problem = "" if token else "is empty"
            except (OSError, UnicodeDecodeError) as exc:
                token, problem = "", f"cannot be read ({exc.__class__.__name__})"
            if problem:
                status = (f"not sent: the token file {path} of credentials "
                          f"{esc.credentials!r} {problem}")
                log.error("escalation of %s %s", what, status)
                self.metrics.escalation_failures.labels("credentials").inc()
                await self.db(self.store.audit, self.actor, "escalation.failed", incident_id,
                              {"reason": reason, "status": status})
                return False
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self.session.post(esc.url, json=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=esc.timeout)) as resp:
                ok = 200 <= resp.status < 300
                status = f"HTTP {resp.status}"
                failure = "http_status"
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok, status, failure = False, exc.__class__.__name__, "unreachable"
        if not ok:
            log.warning("escalation of %s not delivered: %s", what, status)
            self.metrics.escalation_failures.labels(failure).inc()
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
        Then repair incidents left `remediating` although their latest attempt has ended.

        own=True (at start-up) includes this replica's own leftovers; the sweeper passes
        own=False and only takes attempts whose heartbeat went stale (a replica that died).
        Each attempt's record and its incident's move are one transaction.
        """
        done: list[tuple[int, str]] = []
        for att in await self.db(self.store.orphaned_attempts,
                                 self.replica if own else None, self.config.stale_after):
            if att.get("replica") == self.replica and att["incident_id"] in self.tasks:
                # ours and still running: its heartbeat went stale in a store outage, and
                # the run is retrying its record (persist), not orphaned
                continue
            got = await self.db(self.store.incident_with_alert, att["incident_id"])
            if got is None:
                continue
            inc, alert = got
            proc = self.procs.get(att["procedure"])
            rerun, why = await self._rerun_verdict(proc, alert)
            reason = ("reconciled after a restart: re-running (idempotent)" if rerun else
                      f"reconciled after a restart: attempt interrupted and {why}")
            updated, moved = await self.db(
                self.store.finish_attempt, att["id"],
                {"state": "failed", "finished_at": utcnow(),
                 "reason": f"interrupted: the remediator stopped while it was {att['state']}"},
                only_if=("queued", "running"), actor=self.actor,
                move=(inc["id"], ("remediating",), "open" if rerun else "escalated", reason))
            if not updated:
                continue  # another replica reconciled it first
            self.metrics.attempts.labels(att["procedure"], "failed").inc()
            if moved:
                done.append(await self._after_reconcile(inc["id"], rerun, reason))
        done.extend(await self.repair())
        return done

    async def _rerun_verdict(self, proc: Procedure | None, alert: dict[str, Any]) -> tuple[bool, str]:
        """Re-run an interrupted attempt? Only an idempotent procedure whose alert still fires."""
        if proc is None or not proc.idempotent:
            return False, "procedure is not idempotent"
        if not await self._still_firing(alert):
            return False, "the alert no longer fires"
        return True, ""

    async def _after_reconcile(self, incident_id: int, rerun: bool, reason: str) -> tuple[int, str]:
        if rerun:
            await self.consider(incident_id, ignore_cooldown=True)
            return incident_id, "rerun"
        await self.escalate(incident_id, reason)
        return incident_id, "escalated"

    async def repair(self) -> list[tuple[int, str]]:
        """Move on incidents left `remediating` whose latest attempt has ended.

        The incident takes the state the attempt's end implies: succeeded -> resolved;
        dry_run, cancelled, skipped -> open (as a run that ends so moves it); failed or
        rolled_back -> escalated (or `failed` when no escalation is delivered), except an
        attempt interrupted by a crash, which is reconciled like an orphan (an idempotent
        procedure whose alert fires runs again). Every move is conditional on the incident
        still being `remediating`, so replicas repairing at once move it once."""
        done: list[tuple[int, str]] = []
        for att in await self.db(self.store.ended_but_remediating):
            incident_id, state = att["incident_id"], att["state"]
            if incident_id in self.tasks:
                continue  # our own run is still recording its end
            why = f"repaired: its attempt {att['id']} had ended {state} ({att['reason'] or 'no reason'})"
            if state == "succeeded":
                if await self.db(self.store.transition, incident_id, ("remediating",), "resolved",
                                 reason=f"remediation verified; {why}", actor=self.actor):
                    done.append((incident_id, "resolved"))
                continue
            if state in ("dry_run", "cancelled", "skipped"):
                if await self.db(self.store.transition, incident_id, ("remediating",), "open",
                                 reason=why, actor=self.actor):
                    done.append((incident_id, "open"))
                continue
            if str(att["reason"]).startswith("interrupted"):
                got = await self.db(self.store.incident_with_alert, incident_id)
                if got is None:
                    continue
                rerun, what = await self._rerun_verdict(self.procs.get(att["procedure"]), got[1])
                reason = ("reconciled after a restart: re-running (idempotent)" if rerun else
                          f"reconciled after a restart: attempt interrupted and {what}")
                if await self.db(self.store.transition, incident_id, ("remediating",),
                                 "open" if rerun else "escalated", reason=reason, actor=self.actor):
                    done.append(await self._after_reconcile(incident_id, rerun, reason))
                continue
            # failed or rolled_back: hand over to a human (claimed first, then delivered)
            reason = f"{att['reason'] or 'remediation failed'} ({why})"
            if not await self.db(self.store.transition, incident_id, ("remediating",),
                                 "escalated", reason=reason, actor=self.actor):
                continue
            if await self.escalate(incident_id, reason):
                done.append((incident_id, "escalated"))
            elif await self.db(self.store.transition, incident_id, ("escalated",), "failed",
                               reason=f"{reason} (no escalation delivered)", actor=self.actor):
                done.append((incident_id, "failed"))
        return done
