"""`vigil incidents show ID`: an incident, its group, ranked root cause, similar incidents,
recommended procedure and impact, read from a running remediator's admin API."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from vigil.service import ArgumentParser

__all__ = ["fetch", "main", "render_text"]

DEFAULT_URL = "http://127.0.0.1:9095"


def fetch(base_url: str, incident_id: int, token: str | None, timeout: float = 10.0) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = requests.get(f"{base_url.rstrip('/')}/api/v1/incidents/{incident_id}", headers=headers,
                        timeout=timeout)
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:200]}
    return resp.status_code, body


def _fmt_ev(ev: dict[str, Any]) -> str:
    return f"{ev['weight']:+g}  {ev['kind']}: {ev['detail']}"


def render_text(data: dict[str, Any]) -> str:
    inc = data["incident"]
    lines = [f"incident #{inc['id']}  {inc['alertname']}  state={inc['state']}",
             f"  opened {inc['opened_at']}  procedure={inc['procedure'] or '-'}",
             f"  reason: {inc['reason'] or '-'}"]
    group = data.get("group")
    if group:
        lines.append(f"group #{group['id']}  services: {', '.join(group.get('services') or []) or '-'}")
        for m in group["members"]:
            lines.append(f"  #{m['incident']} {m['alertname']} ({m['state']})")
    root = data.get("root_cause")
    if root:
        who = "this incident" if root.get("is_this_incident") else f"incident #{root['incident']}"
        lines.append(f"root cause: {root['alertname']} ({who}), score {root['score']:g}")
        lines.extend(f"  {_fmt_ev(e)}" for e in root.get("evidence", []))
    ranking = (group or {}).get("ranking") or []
    if len(ranking) > 1:
        lines.append("ranking:")
        lines.extend(f"  {i + 1}. {r['alertname']} (#{r['incident']}) score {r['score']:g}"
                     for i, r in enumerate(ranking))
    rec = data.get("recommendation")
    if rec:
        if rec.get("procedure"):
            lines.append(f"recommended procedure: {rec['procedure']} ({rec['reason']})")
        else:
            lines.append(f"recommended procedure: none ({rec['reason']})")
        if rec.get("flagged"):
            lines.append(f"  keeps failing for this signature: {', '.join(rec['flagged'])}")
    similar = data.get("similar") or []
    if similar:
        lines.append(f"similar past incidents ({data.get('signature', '')}):")
        lines.extend(f"  #{s['incident']} similarity {s['similarity']:g}: {s['state']}"
                     + (f", fixed by {s['fixed_by']}" if s.get("fixed_by") else "") for s in similar)
    impact = data.get("impact")
    if impact:
        if "error" in impact:
            lines.append(f"impact: not measured ({impact['error']})")
        else:
            lines.append(f"impact: {impact['failed_requests']:g} failed of {impact['total_requests']:g} "
                         f"requests over {impact['duration_seconds']:g}s; error budget burned "
                         f"{100 * (impact.get('error_budget_burned') or 0):.4f}%")
    else:
        lines.append("impact: not measured yet (measured once the alert resolves)")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="vigil incidents", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="show one incident with its root cause and recommendation")
    show.add_argument("id", type=int, help="incident id")
    show.add_argument("--url", default=os.environ.get("VIGIL_REMEDIATOR_URL", DEFAULT_URL),
                      help=f"remediator base URL (default $VIGIL_REMEDIATOR_URL or {DEFAULT_URL})")
    show.add_argument("--admin-token-file", help="file holding the remediator's admin bearer token")
    show.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    token = None
    if args.admin_token_file:
        try:
            token = Path(args.admin_token_file).read_text().strip()
        except OSError as exc:
            print(f"vigil incidents: error: {args.admin_token_file}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        status, body = fetch(args.url, args.id, token)
    except requests.RequestException as exc:
        print(f"vigil incidents: error: cannot reach {args.url}: {exc.__class__.__name__}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"vigil incidents: error: HTTP {status}: {body.get('error', '')}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2) if args.output == "json" else render_text(body))
    return 0
