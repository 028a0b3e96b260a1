"""Store access for incident intelligence: groups, members, rankings, history (synchronous)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from vigil.remediator.config import IntelligenceSettings
from vigil.remediator.intelligence.correlation import (
    GroupView,
    pick_group,
    service_of,
    shared_values,
)
from vigil.remediator.models import (
    ACTIVE_INCIDENT_STATES,
    Alert,
    Attempt,
    Incident,
    IncidentGroup,
    IncidentIntel,
)
from vigil.remediator.store import Store, utcnow

__all__ = ["IntelRepo", "signature_of"]

REAL_RESULTS = ("succeeded", "failed", "rolled_back")
CANDIDATE_GROUPS = 50  # live groups in the window an alert is compared with (most recent first)
BATCH_CANDIDATES = 200  # candidate groups a batch's window may hold to be grouped in memory


@dataclass
class _Group:
    """A candidate group while a batch is grouped in memory (id None: created by the batch)."""

    id: int | None
    order: int  # tie-break among equal last_alert_at: the newer group first
    first: datetime
    last: datetime
    services: list[str]
    shared: dict[str, list[str]]
    members: int
    live: bool
    added: int = 0
    root: tuple[int, str] | None = None  # (incident, alertname) of a group the batch creates


# Correlation's statements, built once: a statement object reused keeps its compiled form and
# cache key, where building it per alert cost more CPU than PostgreSQL spent running it.
_KNOWN = (sa.select(IncidentIntel.incident_id, IncidentIntel.group_id)
          .where(IncidentIntel.incident_id.in_(sa.bindparam("ids", expanding=True))))
_NEW = (sa.select(Incident.id, Incident.alertname, Incident.alert_starts_at, Incident.state,
                  Alert.labels, Alert.status.label("alert_status"))
        .join(Alert, Alert.id == Incident.alert_id)
        .where(Incident.id.in_(sa.bindparam("ids", expanding=True))))
_COUNTS = (sa.select(IncidentGroup.id, IncidentGroup.member_count)
           .where(IncidentGroup.id.in_(sa.bindparam("ids", expanding=True))))
# a group is live while a member still needs work, or still fires without having been fixed
# (escalated, failed); a group whose incidents were all fixed is history
_LIVE = (sa.select(IncidentIntel.incident_id)
         .join(Incident, Incident.id == IncidentIntel.incident_id)
         .join(Alert, Alert.id == Incident.alert_id)
         .where(IncidentIntel.group_id == IncidentGroup.id,
                sa.or_(Incident.state.in_(ACTIVE_INCIDENT_STATES),
                       sa.and_(Alert.status == "firing", Incident.state != "resolved")))
         .limit(1))
# bounded work per alert in a storm: the most recent live groups in the window, none at the
# size cap. Full groups are skipped on member_count without looking at their members, and
# "live" is a per-group subquery with LIMIT 1: written as EXISTS, PostgreSQL made it a
# semi-join that computed liveness for every incident in the store, on every alert.
_CANDIDATES = (sa.select(IncidentGroup.id, IncidentGroup.first_alert_at,
                         IncidentGroup.last_alert_at, IncidentGroup.services, IncidentGroup.shared,
                         IncidentGroup.member_count)
               .where(IncidentGroup.last_alert_at >= sa.bindparam("lo"),
                      IncidentGroup.first_alert_at <= sa.bindparam("hi"),
                      IncidentGroup.member_count < sa.bindparam("max_size"),
                      _LIVE.scalar_subquery().is_not(None))
               .order_by(IncidentGroup.last_alert_at.desc(), IncidentGroup.id.desc())
               .limit(sa.bindparam("n")))
_NEW_GROUP = sa.insert(IncidentGroup).returning(IncidentGroup.id, sort_by_parameter_order=True)
_JOIN_GROUP = (sa.update(IncidentGroup).where(IncidentGroup.id == sa.bindparam("gid"))
               .values(updated_at=sa.bindparam("now"), services=sa.bindparam("services_"),
                       shared=sa.bindparam("shared_"), first_alert_at=sa.bindparam("first"),
                       last_alert_at=sa.bindparam("last"),
                       member_count=IncidentGroup.member_count + sa.bindparam("added")))
_NEW_MEMBER = sa.insert(IncidentIntel)
_SET_FINDINGS = (sa.update(IncidentIntel)
                 .where(IncidentIntel.incident_id.in_(sa.bindparam("ids", expanding=True)))
                 .values(findings=sa.bindparam("findings_")))


def signature_of(alertname: str, role: str) -> str:
    return f"{alertname}/{role or '-'}"


def _row(obj: Any) -> dict[str, Any]:
    return dict(obj._mapping)


class IntelRepo:
    def __init__(self, store: Store, settings: IntelligenceSettings) -> None:
        self.store = store
        self.settings = settings

    @property
    def engine(self) -> sa.Engine:
        return self.store.engine

    def assign(self, incident_id: int) -> int | None:
        """Put the incident into a group (joining a connected one, else a new one); its group id."""
        got = self.assign_many([incident_id]).get(incident_id)
        return got[0] if got else None

    def assign_many(self, incident_ids: list[int]) -> dict[int, tuple[int, int]]:
        """Group incidents in one transaction (in order): {incident: (group, members now)}."""
        with self.engine.begin() as conn:
            if self.store.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7431000011)"))
            ids = list(dict.fromkeys(incident_ids))
            groups: dict[int, int] = {int(r.incident_id): int(r.group_id)
                                      for r in conn.execute(_KNOWN, {"ids": ids})}
            rows = {int(r.id): r for r in conn.execute(_NEW, {"ids": ids})}
            todo = [rows[i] for i in ids if i not in groups and i in rows]
            batch = self._assign_batch(conn, todo) if todo else {}
            if batch is None:  # too many groups to hold: one alert at a time, in the store
                batch = {int(r.id): self._assign(conn, int(r.id), r) for r in todo}
            groups.update(batch)
            if not groups:
                return {}
            counts = {int(r[0]): int(r[1])
                      for r in conn.execute(_COUNTS, {"ids": sorted(set(groups.values()))})}
            return {i: (g, int(counts.get(g, 1))) for i, g in groups.items()}

    def _assign_batch(self, conn: sa.Connection, todo: list[Any]) -> dict[int, int] | None:
        """Group a batch in memory from one read of the candidate groups, then write it.

        Decides as _assign does alert by alert (the same candidates per alert, in the same
        order), with a handful of statements per batch instead of three per alert. None when
        the batch's window holds BATCH_CANDIDATES or more candidate groups.
        """
        st = self.settings
        span = timedelta(seconds=st.window)
        first = min(r.alert_starts_at for r in todo)
        last = max(r.alert_starts_at for r in todo)
        fetched = conn.execute(_CANDIDATES, {"lo": first - span, "hi": last + span,
                                             "max_size": st.max_group_size,
                                             "n": BATCH_CANDIDATES}).all()
        if len(fetched) >= BATCH_CANDIDATES:
            return None
        groups = [_Group(int(g.id), int(g.id), g.first_alert_at, g.last_alert_at,
                         list(g.services or []), dict(g.shared or {}), int(g.member_count), True)
                  for g in fetched]
        order = max((g.order for g in groups), default=0)
        members: list[tuple[int, _Group, str, str, str]] = []
        for r in todo:
            labels = dict(r.labels or {})
            starts = r.alert_starts_at
            service = service_of(labels, st)
            shared = shared_values(labels, st)
            lo, hi = starts - span, starts + span
            cands = sorted((g for g in groups if g.live and g.members < st.max_group_size
                            and g.last >= lo and g.first <= hi),
                           key=lambda g: (g.last, g.order), reverse=True)[:CANDIDATE_GROUPS]
            pick = pick_group([GroupView(k, g.last, list(g.services), dict(g.shared))
                               for k, g in enumerate(cands)], starts, service, shared, st)
            live = r.state in ACTIVE_INCIDENT_STATES or (r.alert_status == "firing"
                                                         and r.state != "resolved")
            if pick is None:
                order += 1
                g = _Group(None, order, starts, starts, [service] if service else [], shared, 1,
                           live, root=(int(r.id), r.alertname))
                groups.append(g)
            else:
                g = cands[pick]
                g.services = sorted(set(g.services) | ({service} if service else set()))
                merged = {k: list(v) for k, v in g.shared.items()}
                for k, vals in shared.items():
                    merged[k] = sorted(set(merged.get(k, [])) | set(vals))
                g.shared = merged
                g.first, g.last = min(g.first, starts), max(g.last, starts)
                g.members += 1
                g.added += 1
            role = st.roles.get(service, "")
            members.append((int(r.id), g, service, role, signature_of(r.alertname, role)))
        now = utcnow()
        created = [g for g in groups if g.id is None]
        if created:
            rows = []
            for g in created:
                assert g.root is not None  # a group this batch creates is opened by its root
                rows.append({"opened_at": now, "updated_at": now, "first_alert_at": g.first,
                             "last_alert_at": g.last, "services": g.services, "shared": g.shared,
                             "root_incident_id": g.root[0], "root_alertname": g.root[1],
                             "ranking": [], "member_count": g.members})
            ids = conn.execute(_NEW_GROUP, rows).scalars().all()
            for g, gid in zip(created, ids, strict=True):
                g.id = int(gid)
        for g in groups:
            if g.added and g.root is None:
                conn.execute(_JOIN_GROUP, {"gid": g.id, "now": now, "services_": g.services,
                                           "shared_": g.shared, "first": g.first,
                                           "last": g.last, "added": g.added})
        conn.execute(_NEW_MEMBER, [
            {"incident_id": i, "group_id": g.id, "service": service, "role": role,
             "signature": signature, "findings": [], "impact": None}
            for i, g, service, role, signature in members])
        return {i: int(g.id) for i, g, *_ in members}  # type: ignore[arg-type]

    def _assign(self, conn: sa.Connection, incident_id: int, row: Any) -> int:
        st = self.settings
        labels = dict(row.labels or {})
        starts = row.alert_starts_at
        service = service_of(labels, st)
        shared = shared_values(labels, st)
        cands = conn.execute(_CANDIDATES, {
            "lo": starts - timedelta(seconds=st.window),
            "hi": starts + timedelta(seconds=st.window),
            "max_size": st.max_group_size, "n": CANDIDATE_GROUPS}).all()
        views = [GroupView(g.id, g.last_alert_at, list(g.services or []), dict(g.shared or {}))
                 for g in cands]
        gid = pick_group(views, starts, service, shared, st)
        now = utcnow()
        if gid is None:
            gid = int(conn.execute(_NEW_GROUP, {
                "opened_at": now, "updated_at": now, "first_alert_at": starts,
                "last_alert_at": starts, "services": [service] if service else [],
                "shared": shared, "root_incident_id": incident_id,
                "root_alertname": row.alertname, "ranking": [], "member_count": 1,
            }).scalar_one())
        else:
            g = next(c for c in cands if c.id == gid)
            services = sorted(set(g.services or []) | ({service} if service else set()))
            merged = {k: list(v) for k, v in (g.shared or {}).items()}
            for k, vals in shared.items():
                merged[k] = sorted(set(merged.get(k, [])) | set(vals))
            conn.execute(_JOIN_GROUP, {
                "gid": gid, "now": now, "services_": services, "shared_": merged,
                "first": min(g.first_alert_at, starts), "last": max(g.last_alert_at, starts),
                "added": 1})
        role = st.roles.get(service, "")
        conn.execute(_NEW_MEMBER, {
            "incident_id": incident_id, "group_id": gid, "service": service, "role": role,
            "signature": signature_of(row.alertname, role), "findings": [], "impact": None})
        return gid

    def members(self, group_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Incident.id, Incident.alertname, Incident.state, Incident.procedure,
                          Incident.alert_starts_at, Incident.resolved_at, Incident.escalated_at,
                          Incident.failed_at, IncidentIntel.service, IncidentIntel.signature)
                .join(IncidentIntel, IncidentIntel.incident_id == Incident.id)
                .where(IncidentIntel.group_id == group_id).order_by(Incident.id)).all()
            return [_row(r) for r in rows]

    def group(self, group_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            g = conn.execute(sa.select(IncidentGroup).where(IncidentGroup.id == group_id)).first()
            return _row(g) if g else None

    def intel(self, incident_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(IncidentIntel)
                             .where(IncidentIntel.incident_id == incident_id)).first()
            return _row(r) if r else None

    def save_ranking(self, group_id: int, ranking: list[dict[str, Any]],
                     findings: dict[int, list[str]]) -> bool:
        """Store a ranking unless members joined since it was computed (a newer one follows)."""
        now = utcnow()
        with self.engine.begin() as conn:
            count = conn.execute(sa.select(IncidentGroup.member_count)
                                 .where(IncidentGroup.id == group_id).with_for_update()).scalar()
            if count != len(ranking):
                return False
            top = ranking[0] if ranking else None
            conn.execute(sa.update(IncidentGroup).where(IncidentGroup.id == group_id).values(
                ranking=ranking, ranked_at=now, updated_at=now,
                root_incident_id=top["incident"] if top else None,
                root_alertname=top["alertname"] if top else None))
            # one statement per distinct list (usually one for the whole group), not per member
            by_value: dict[tuple[str, ...], list[int]] = {}
            for inc_id, checks in findings.items():
                by_value.setdefault(tuple(sorted(set(checks))), []).append(inc_id)
            for checks_, ids in by_value.items():
                conn.execute(_SET_FINDINGS, {"ids": ids, "findings_": list(checks_)})
            return True

    def save_impact(self, incident_id: int, impact: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(IncidentIntel).where(IncidentIntel.incident_id == incident_id)
                         .values(impact=impact, impact_at=utcnow()))

    def needing_impact(self, limit: int = 20) -> list[dict[str, Any]]:
        """Closed incidents (alert resolved, or the incident is final) without a measured impact."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Incident.id, Incident.alert_starts_at, Incident.alert_resolved_at,
                          Incident.resolved_at, Incident.escalated_at, Incident.failed_at,
                          Incident.state, Alert.labels, IncidentIntel.service)
                .join(IncidentIntel, IncidentIntel.incident_id == Incident.id)
                .join(Alert, Alert.id == Incident.alert_id)
                .where(IncidentIntel.impact_at.is_(None),
                       sa.or_(Incident.alert_resolved_at.is_not(None), Incident.state == "resolved"))
                .order_by(Incident.id).limit(limit)).all()
            return [_row(r) for r in rows]

    # --- history -----------------------------------------------------------------------------

    def history(self, signature: str, exclude: int) -> list[dict[str, Any]]:
        """Past incidents with this signature: how they ended, their labels, findings, attempts."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Incident.id, Incident.state, Incident.reason, Incident.procedure,
                          Incident.opened_at, Incident.resolved_at, Alert.labels,
                          IncidentIntel.findings, IncidentIntel.group_id, IncidentGroup.root_incident_id)
                .join(IncidentIntel, IncidentIntel.incident_id == Incident.id)
                .join(IncidentGroup, IncidentGroup.id == IncidentIntel.group_id)
                .join(Alert, Alert.id == Incident.alert_id)
                .where(IncidentIntel.signature == signature, Incident.id != exclude,
                       Incident.state.in_(("resolved", "failed", "escalated")))
                .order_by(Incident.id.desc()).limit(200)).all()
            out = [_row(r) for r in rows]
            ids = {r["id"] for r in out} | {r["root_incident_id"] for r in out if r["root_incident_id"]}
            attempts: dict[int, list[dict[str, Any]]] = {}
            if ids:
                for a in conn.execute(sa.select(Attempt.incident_id, Attempt.procedure, Attempt.state,
                                                Attempt.verification)
                                      .where(Attempt.incident_id.in_(ids), Attempt.dry_run.is_(False),
                                             Attempt.state.in_(REAL_RESULTS))
                                      .order_by(Attempt.id)).all():
                    attempts.setdefault(a.incident_id, []).append(_row(a))
            for r in out:
                r["attempts"] = attempts.get(r["id"], [])
                root = r["root_incident_id"]
                r["root_attempts"] = attempts.get(root, []) if root and root != r["id"] else []
            return out

    def procedure_stats(self) -> list[dict[str, Any]]:
        """Real attempts per (signature, procedure): attempts and verified successes."""
        ok = sa.func.sum(sa.case((Attempt.state == "succeeded", 1), else_=0))
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(IncidentIntel.signature, Attempt.procedure,
                          sa.func.count().label("attempts"), ok.label("succeeded"))
                .join(Attempt, Attempt.incident_id == IncidentIntel.incident_id)
                .where(Attempt.dry_run.is_(False), Attempt.state.in_(REAL_RESULTS))
                .group_by(IncidentIntel.signature, Attempt.procedure)).all()
            return [{"signature": r.signature, "procedure": r.procedure,
                     "attempts": int(r.attempts), "succeeded": int(r.succeeded or 0)} for r in rows]

    def root_cause_of_group(self, group_id: int) -> tuple[int | None, str | None]:
        g = self.group(group_id)
        return (g["root_incident_id"], g["root_alertname"]) if g else (None, None)


