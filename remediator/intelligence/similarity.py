"""Similar past incidents and the recommended procedure for a signature (pure logic, no I/O).

A signature is the alert name and the role of the service it is about. Past incidents with
the same signature are ordered by label similarity (Jaccard over label pairs, alertname left
out) plus the findings they share. The recommendation is the procedure with the best verified
success rate over those incidents: an incident's own attempts, or, for a symptom, the attempts
on its group's root cause (the fix that made the symptom go away).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["jaccard", "recommend", "similar", "success_table"]

VOLATILE_LABELS = frozenset({"alertname"})


def jaccard(a: Mapping[str, str], b: Mapping[str, str]) -> float:
    pa = {(k, v) for k, v in a.items() if k not in VOLATILE_LABELS}
    pb = {(k, v) for k, v in b.items() if k not in VOLATILE_LABELS}
    if not pa and not pb:
        return 1.0
    return len(pa & pb) / len(pa | pb)


def similar(labels: Mapping[str, str], findings: Sequence[str], history: Sequence[dict[str, Any]],
            limit: int = 5) -> list[dict[str, Any]]:
    """The closest past incidents: [{incident, similarity, state, reason, procedure, fixed_by}]."""
    scored = []
    for h in history:
        sim = jaccard(labels, h.get("labels") or {})
        common = set(findings) & set(h.get("findings") or [])
        union = set(findings) | set(h.get("findings") or [])
        if union:
            sim = 0.7 * sim + 0.3 * len(common) / len(union)
        fixed_by = next((a["procedure"] for a in reversed(h.get("attempts", []))
                         if a["state"] == "succeeded"), None)
        if fixed_by is None:
            fixed_by = next((a["procedure"] for a in reversed(h.get("root_attempts", []))
                             if a["state"] == "succeeded"), None)
        scored.append({"incident": h["id"], "similarity": round(sim, 3), "state": h["state"],
                       "reason": h.get("reason", ""), "procedure": h.get("procedure"),
                       "fixed_by": fixed_by, "opened_at": h.get("opened_at"),
                       "resolved_at": h.get("resolved_at")})
    scored.sort(key=lambda s: (-s["similarity"], -s["incident"]))
    return scored[:limit]


def success_table(history: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """procedure -> {attempts, succeeded} over the incidents (own attempts, else the root's)."""
    table: dict[str, dict[str, int]] = {}
    for h in history:
        attempts = h.get("attempts") or h.get("root_attempts") or []
        for a in attempts:
            row = table.setdefault(a["procedure"], {"attempts": 0, "succeeded": 0})
            row["attempts"] += 1
            row["succeeded"] += 1 if a["state"] == "succeeded" else 0
    return table


def recommend(signature: str, history: Sequence[dict[str, Any]], flag_after: int) -> dict[str, Any]:
    """The procedure with the best verified success rate for this signature, and flagged ones."""
    table = success_table(history)
    flagged = sorted(p for p, r in table.items()
                     if r["attempts"] - r["succeeded"] >= flag_after and r["succeeded"] / r["attempts"] < 0.5)
    order = sorted(table.items(), key=lambda kv: (-kv[1]["succeeded"] / kv[1]["attempts"],
                                                 -kv[1]["succeeded"], kv[0]))
    rates: list[dict[str, Any]] = [
        {"procedure": p, "attempts": r["attempts"], "succeeded": r["succeeded"],
         "success_rate": round(r["succeeded"] / r["attempts"], 3)} for p, r in order]
    best = next((r for r in rates if r["succeeded"] > 0 and r["procedure"] not in flagged), None)
    out: dict[str, Any] = {"signature": signature, "past_incidents": len(history),
                           "procedures": rates, "flagged": flagged}
    if best is None:
        out.update(procedure=None, success_rate=None,
                   reason=("no past incident with this signature" if not history else
                           "no procedure has a verified success for this signature"))
    else:
        out.update(procedure=best["procedure"], success_rate=best["success_rate"],
                   reason=f"{best['succeeded']} of {best['attempts']} verified successes over "
                          f"{len(history)} past incidents with signature {signature}")
    return out
