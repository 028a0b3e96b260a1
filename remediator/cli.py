"""`vigil remediator simulate payload.json`: show what would run, with which parameters.

Nothing is executed and nothing is stored: the payload is validated like the webhook does,
each alert is matched to a procedure, and the rendered steps are printed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.remediator.actions import describe_step, step_name
from vigil.remediator.config import RemediatorConfig, load_config
from vigil.remediator.matching import match_alert
from vigil.remediator.payload import PayloadError, parse_payload
from vigil.remediator.templating import render

from vigil.paths import DEPLOY_DIR
from vigil.service import ArgumentParser

__all__ = ["main", "simulate", "simulate_config"]


def simulate(config_path: Path, payload: Any) -> list[dict[str, Any]]:
    """Per alert: the decision, the procedure, its parameters and rendered steps."""
    return simulate_config(load_config(config_path), payload)


def simulate_config(config: RemediatorConfig, payload: Any) -> list[dict[str, Any]]:
    """simulate() on a loaded configuration (the console's dry run of a pasted payload)."""
    parsed = parse_payload(payload)
    out = []
    for a in parsed.alerts:
        entry: dict[str, Any] = {"alertname": a.labels["alertname"], "fingerprint": a.fingerprint,
                                 "status": a.status}
        if a.status == "resolved":
            entry["decision"] = "close the incident and cancel its work"
            out.append(entry)
            continue
        m = match_alert(config, a.as_dict())
        if m.procedure is None:
            entry["decision"] = "no procedure matches: escalate"
        elif m.refused:
            entry.update(procedure=m.procedure.name, decision=f"refused: {m.refused}")
        else:
            p = m.procedure
            values = {**config.constants, **m.params}
            entry.update(
                procedure=p.name, target=m.target,
                decision="await approval, then run" if p.requires_approval else "run",
                dry_run=config.dry_run or p.dry_run,
                params={k: v for k, v in m.params.items()},
                steps=[{"name": step_name(s, i), **describe_step(s, values, config)}
                       for i, s in enumerate(p.steps)],
                rollback=[{"name": step_name(s, i), **describe_step(s, values, config)}
                          for i, s in enumerate(p.rollback)],
                verify=render(p.verify.query, values) if p.verify else None,
                cooldown_seconds=p.cooldown, max_attempts=p.max_attempts)
        out.append(entry)
    return out


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="vigil remediator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sim = sub.add_parser("simulate", help="show which procedure a payload would run")
    sim.add_argument("payload", help="an Alertmanager webhook payload (JSON file, - for stdin)")
    sim.add_argument("--config.file", dest="config_file", default=str(DEPLOY_DIR / "remediator.yml"),
                     help="remediator config or procedures file (default: deploy/remediator.yml)")
    sim.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.payload == "-" else Path(args.payload).read_text()
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"vigil remediator: error: {args.payload}: invalid JSON: line {exc.lineno} "
              f"column {exc.colno}: {exc.msg}", file=sys.stderr)
        return 1
    try:
        result = simulate(Path(args.config_file), payload)
    except PayloadError as exc:
        print(f"vigil remediator: error: {args.payload}: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    for entry in result:
        print(f"{entry['alertname']} ({entry['fingerprint']}, {entry['status']}): {entry['decision']}")
        if "steps" in entry:
            print(f"  procedure: {entry['procedure']}  target: {entry['target']}"
                  + ("  [dry run]" if entry["dry_run"] else ""))
            for k, v in entry["params"].items():
                print(f"  param {k} = {v}")
            for step in entry["steps"]:
                print(f"  step {step['name']}: {json.dumps({k: v for k, v in step.items() if k != 'name'})}")
            for step in entry["rollback"]:
                print(f"  rollback {step['name']}: {json.dumps({k: v for k, v in step.items() if k != 'name'})}")
            if entry["verify"]:
                print(f"  verify: {entry['verify']}")
        elif "procedure" in entry:
            print(f"  procedure: {entry['procedure']}")
    return 0
