"""Incident intelligence for the engine: correlate, rank, gate symptoms, recommend, measure impact."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

import aiohttp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from vigil.remediator.config import RemediatorConfig
from vigil.remediator.intelligence.impact import measure_impact
from vigil.remediator.intelligence.prom import PromClient, window
from vigil.remediator.intelligence.repo import IntelRepo
from vigil.remediator.intelligence.rootcause import Member, explains, rank
from vigil.remediator.intelligence.similarity import recommend, similar
from vigil.remediator.store import Store, utcnow

__all__ = ["Intelligence", "IntelligenceCollector"]

log = logging.getLogger("vigil.remediator.intelligence")
T = TypeVar("T")
FINAL_STATES = ("resolved", "failed", "escalated")
ACTIVE_STATES = ("open", "awaiting_approval", "remediating")
RANK_GRACE = 30.0  # seconds a member waits for a ranking that is being computed


class Intelligence:
    def __init__(self, config: RemediatorConfig, store: Store, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.settings = config.intelligence
        self.repo = IntelRepo(store, self.settings)
        self.store = store
        self.prom = PromClient(session, config.prometheus_url) if config.prometheus_url else None
        self.symptom = re.compile(f"(?:{self.settings.symptom_alerts})|(?:{self.settings.derived_alerts})")
        self.stats: list[dict[str, Any]] = []  # per (signature, procedure), for the metrics
        self._background: set[asyncio.Task[Any]] = set()
        # store calls still running in threads (a cancelled task does not stop its thread)
        self._inflight = 0
        self._lock = threading.Lock()
        # its own threads: a burst of correlation work must never queue ahead of the webhook's
        # ingest transactions in the default executor (a 2xx waits on those)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vigil-intel")

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self._inflight -= 1

        with self._lock:
            self._inflight += 1
        try:
            fut = asyncio.get_running_loop().run_in_executor(self._pool, call)
        except RuntimeError:  # the pool was shut down: the call never started
            with self._lock:
                self._inflight -= 1
            raise
        return await fut

    # --- correlation and ranking ------------------------------------------------------------

    async def correlate(self, incident_ids: Iterable[int]) -> set[int]:
        """Group new incidents; rank groups with several members now.

        Returns the earlier members of the groups that were re-ranked (their turn may have
        changed: the caller considers them again). A new incident alone in its group is
        clearly independent so far: the caller acts on it at once, and its (trivial) ranking
        is written in the background.
        """
        ids = list(incident_ids)
        if not ids:
            return set()
        assigned = await self.db(self.repo.assign_many, ids)  # one transaction for the batch
        groups: dict[int, tuple[list[int], int]] = {}
        for inc_id, (gid, size) in assigned.items():
            groups.setdefault(gid, ([], size))[0].append(inc_id)
        again: set[int] = set()
        for gid, (new, size) in groups.items():
            if size == 1:
                if self.prom is not None:  # without evidence to read, a lone ranking is computed on read
                    self._spawn(self.rank(gid))
                continue
            await self.rank(gid)
            members = await self.db(self.repo.members, gid)
            again.update(m["id"] for m in members if m["id"] not in new and m["state"] == "open")
        return again

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for _ in range(100):  # let store calls already in threads finish before the store closes
            if self._inflight <= 0:
                break
            await asyncio.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def rank(self, group_id: int) -> list[dict[str, Any]]:
        """Rank the group's members from the evidence and store the ranking."""
        try:
            members = await self.db(self.repo.members, group_id)
            if not members:
                return []
            signals = []
            first = min(m["alert_starts_at"] for m in members)
            if self.prom is not None:
                start, end = window(first, self.settings.evidence_lookback,
                                    min(30.0, self.settings.window))
                end = min(end, max(utcnow(), first))
                group = await self.db(self.repo.group, group_id)
                services = set(group["services"] if group else [])
                try:
                    signals = await asyncio.wait_for(self.prom.signals(start, end, services), 15)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    log.warning("evidence from Prometheus unavailable: %s", exc.__class__.__name__)
            # computed on the intelligence threads: a group of 50 is 2,500 pairs, which would
            # hold up the event loop (and every webhook request) while it is ranked
            ranked = await self.db(
                rank, [Member(m["id"], m["alertname"], m["service"], m["alert_starts_at"],
                              m["procedure"] is not None) for m in members],
                signals, self.settings)
            findings = {m["id"]: [s.name for s in signals if s.kind == "finding"
                                  and explains(s, m["alertname"], self.settings)] for m in members}
            await self.db(self.repo.save_ranking, group_id, ranked, findings)
            return ranked
        except Exception:
            log.exception("ranking group %d failed", group_id)
            return []

    # --- gating symptoms --------------------------------------------------------------------

    async def gate(self, inc: dict[str, Any],
                   cache: dict[int, tuple[Any, list[dict[str, Any]]]] | None = None) -> str | None:
        """None to go ahead; else why this incident waits (recorded as its reason).

        `cache` (group id -> (group, members)) is shared by the gates of one admitted batch:
        a storm's incidents in one group read the group once, not once each."""
        reason = await self._gate(inc, {} if cache is None else cache)
        if reason and reason != inc.get("reason"):
            await self.db(self.store.set_reason, inc["id"], reason)
        return reason

    async def _gate(self, inc: dict[str, Any],
                    cache: dict[int, tuple[Any, list[dict[str, Any]]]]) -> str | None:
        intel = await self.db(self.repo.intel, inc["id"])
        if intel is None:
            # the sweeper can see an incident before its admission correlated it; admission
            # considers it right after (if correlation keeps failing, act alone after a grace)
            if utcnow() < inc["opened_at"] + timedelta(seconds=RANK_GRACE):
                return "waiting: not correlated yet"
            return None
        if intel["group_id"] not in cache:
            cache[intel["group_id"]] = (await self.db(self.repo.group, intel["group_id"]),
                                        await self.db(self.repo.members, intel["group_id"]))
        group, members = cache[intel["group_id"]]
        if group is None:
            return None
        root_id = group["root_incident_id"]
        now = utcnow()
        if (len(members) > 1 and len(group["ranking"] or []) != len(members)
                and now < group["updated_at"] + timedelta(seconds=RANK_GRACE)):
            # a member just joined: wait (briefly, bounded) for the group's new ranking
            return f"waiting: group #{group['id']} is being ranked"
        if len(members) == 1 or root_id in (None, inc["id"]):
            hold = self.settings.symptom_hold
            if (hold > 0 and self.symptom.fullmatch(inc["alertname"])
                    and now < inc["opened_at"] + timedelta(seconds=hold)):
                return (f"waiting: {inc['alertname']} is symptom-class; holding {hold:g}s "
                        "for its cause to arrive")
            return None
        root = next((m for m in members if m["id"] == root_id), None)
        if root is None or root["alertname"] == inc["alertname"]:
            return None  # another instance of the same alert is a peer, not a symptom
        if root["state"] in ACTIVE_STATES:
            return (f"waiting: symptom of incident #{root_id} ({root['alertname']}), "
                    f"the ranked root cause of group #{group['id']}")
        ended = root["resolved_at"] or root["escalated_at"] or root["failed_at"] or now
        if now < ended + timedelta(seconds=self.settings.reevaluate_after):
            return (f"waiting: root cause incident #{root_id} ended {root['state']}; "
                    f"re-evaluating after {self.settings.reevaluate_after:g}s")
        return None  # the cause's outcome is in and this alert still fires: act on it

    # --- reading --------------------------------------------------------------------------------

    async def details(self, incident_id: int) -> dict[str, Any]:
        """group, root_cause, similar, recommendation and impact for one incident."""
        intel = await self.db(self.repo.intel, incident_id)
        if intel is None:
            return {"group": None, "root_cause": None, "similar": [], "recommendation": None,
                    "impact": None}
        group = await self.db(self.repo.group, intel["group_id"]) or {}
        members = await self.db(self.repo.members, intel["group_id"])
        ranking = group.get("ranking") or []
        if not ranking and len(members) == 1:  # a lone incident that was never ranked
            m = members[0]
            ranking = rank([Member(m["id"], m["alertname"], m["service"], m["alert_starts_at"],
                                   m["procedure"] is not None)], [], self.settings)
        top = ranking[0] if ranking else None
        got = await self.db(self.store.incident_with_alert, incident_id)
        labels = got[1]["labels"] if got else {}
        history = await self.db(self.repo.history, intel["signature"], incident_id)
        return {
            "group": {"id": group.get("id"), "opened_at": group.get("opened_at"),
                      "services": group.get("services"), "ranked_at": group.get("ranked_at"),
                      "members": [{"incident": m["id"], "alertname": m["alertname"],
                                   "state": m["state"], "service": m["service"]} for m in members],
                      "ranking": ranking},
            "root_cause": None if top is None else {
                **top, "is_this_incident": top["incident"] == incident_id},
            "signature": intel["signature"],
            "findings": intel["findings"],
            "similar": similar(labels, intel["findings"] or [], history),
            "recommendation": recommend(intel["signature"], history,
                                        self.settings.flag_after_failures),
            "impact": intel["impact"],
        }

    async def escalation_extra(self, incident_id: int) -> dict[str, Any]:
        try:
            d = await self.details(incident_id)
        except Exception:
            log.exception("no intelligence for escalation of incident %d", incident_id)
            return {}
        root = d["root_cause"]
        return {"group": d["group"]["id"] if d["group"] else None,
                "root_cause": None if root is None else {
                    "incident": root["incident"], "alertname": root["alertname"],
                    "score": root["score"]},
                "recommendation": d["recommendation"]}

    # --- background -------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Refresh success-rate statistics and measure impact of incidents that closed."""
        self.stats = await self.db(self.repo.procedure_stats)
        if self.prom is None:
            return
        for row in await self.db(self.repo.needing_impact):
            end: datetime = (row["alert_resolved_at"] or row["resolved_at"] or utcnow())
            impact = await measure_impact(self.prom, self.settings.impact, dict(row["labels"] or {}),
                                          row["service"], row["alert_starts_at"], end)
            await self.db(self.repo.save_impact, row["id"], impact)


class IntelligenceCollector(Collector):
    """vigil_procedure_success_ratio / _attempts / _flagged per signature, from cached stats."""

    def __init__(self, source: Callable[[], Intelligence | None]) -> None:
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        intel = self._source()
        if intel is None:
            return
        labels = ["signature", "procedure"]
        ratio = GaugeMetricFamily("vigil_procedure_success_ratio",
                                  "Verified successes / real attempts of a procedure per incident signature.",
                                  labels=labels)
        attempts = GaugeMetricFamily("vigil_procedure_signature_attempts",
                                     "Real attempts of a procedure per incident signature.", labels=labels)
        flagged = GaugeMetricFamily("vigil_procedure_flagged",
                                    "1 when a procedure keeps failing for a signature "
                                    "(intelligence.flag_after_failures failures, under 50% success).",
                                    labels=labels)
        limit = intel.settings.flag_after_failures
        for s in intel.stats:
            key = [s["signature"], s["procedure"]]
            ratio.add_metric(key, s["succeeded"] / s["attempts"] if s["attempts"] else 0.0)
            attempts.add_metric(key, float(s["attempts"]))
            bad = s["attempts"] - s["succeeded"] >= limit and s["succeeded"] / s["attempts"] < 0.5
            flagged.add_metric(key, 1.0 if bad else 0.0)
        yield ratio
        yield attempts
        yield flagged
