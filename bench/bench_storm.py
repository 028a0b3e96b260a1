"""Benchmark an alert storm: a burst of matched alerts, each running a procedure, drained.

Posts `--alerts` distinct firing alerts (5,000 by default, 50 per notification, as fast as
the webhook takes them) to `vigil-remediator` on PostgreSQL. Every alert matches one
procedure whose only step takes `--step-ms` (100 ms, a `wait` step), on its own target, with
`--concurrency` runs at once. It measures, in the same run:

- drain time: from the first post until no incident is `open` or `remediating`;
- the ideal drain time, runs x step time / concurrency, and the ratio between the two
  (target: within 2x);
- the remediator's CPU seconds (user + system, from /proc) per run;
- runs the blast radius held back (`--max-targets` / `--max-per-hour`, off by default) and
  the escalations it sent for them;
- exactly-once: every incident that ran has exactly one attempt.

    .venv/bin/python bench/bench_storm.py [--alerts 5000] [--step-ms 100] [--concurrency 10]
        [--max-targets N] [--max-per-hour M] [--timeout 600] [--database-url URL]

The machine's 1-minute load average is printed too: the load generator, the remediator and
PostgreSQL share the cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from vigil.procs import ManagedProcess, free_port
from vigil.sink import WebhookReceiver

PER_NOTIFICATION = 50


def notifications(n: int, run: str) -> list[bytes]:
    bodies = []
    for start in range(0, n, PER_NOTIFICATION):
        alerts = [{"status": "firing", "fingerprint": uuid.uuid5(uuid.NAMESPACE_OID, f"{run}-{i}").hex[:16],
                   "labels": {"alertname": "StormAlert", "target": f"t{i}", "job": "demo"},
                   "annotations": {"summary": "storm"}, "startsAt": "2026-11-26T10:00:00Z",
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"}
                  for i in range(start, min(n, start + PER_NOTIFICATION))]
        bodies.append(json.dumps({
            "version": "4", "groupKey": f"{{}}:{{alertname=\"StormAlert\", n=\"{start}\"}}",
            "truncatedAlerts": 0, "status": "firing", "receiver": "vigil-remediator",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": alerts}).encode())
    return bodies


async def burst(url: str, token: str, bodies: list[bytes]) -> dict[int, int]:
    """Post every notification, 16 at once, retrying non-2xx as Alertmanager does."""
    statuses: dict[int, int] = {}
    slots = asyncio.Semaphore(16)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        async def one(body: bytes) -> None:
            async with slots:
                for _ in range(20):
                    try:
                        async with session.post(url, data=body, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=30)) as resp:
                            await resp.read()
                            statuses[resp.status] = statuses.get(resp.status, 0) + 1
                            if resp.status == 200:
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        statuses[0] = statuses.get(0, 0) + 1
                    await asyncio.sleep(0.5)

        await asyncio.gather(*(one(b) for b in bodies))
    return statuses


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(
        "VIGIL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--step-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--max-targets", type=int, default=None,
                        help="blast radius: targets of the procedure remediating at once, fleet-wide")
    parser.add_argument("--max-per-hour", type=int, default=None,
                        help="blast radius: targets the procedure may start per hour, fleet-wide")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up draining after this")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-storm-"))
    schema = f"bench_storm_{uuid.uuid4().hex[:10]}"
    base = make_url(args.database_url).set(drivername="postgresql+psycopg2")
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db_url = base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    token = secrets.token_urlsafe(24)
    (workdir / "token").write_text(token)
    sink = WebhookReceiver().start()
    blast = {k: v for k, v in (("max_targets", args.max_targets),
                                ("max_per_hour", args.max_per_hour)) if v is not None}
    proc_cfg: dict[str, Any] = {
        "name": "storm", "match": ['alertname="StormAlert"'], "cooldown": 0,
        "max_concurrent": args.concurrency, "max_attempts": 3,
        "params": {"target": {"label": "target", "pattern": "t[0-9]{1,6}"}}, "target": "${target}",
        "steps": [{"action": "wait", "seconds": args.step_ms / 1000}]}
    if blast:
        proc_cfg["blast_radius"] = blast
    config = workdir / "remediator.yml"
    config.write_text(yaml.safe_dump({
        "database_url": db_url, "replica_id": "storm", "max_concurrent": args.concurrency,
        "webhook": {"bearer_token_file": str(workdir / "token")},
        "escalation": {"url": sink.url}, "procedures": [proc_cfg]}))
    port = free_port()
    rem = ManagedProcess(
        name="remediator", log_path=workdir / "remediator.log",
        argv=[sys.executable, "-m", "vigil.remediator.service", f"--config.file={config}",
              f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        ready_url=f"http://127.0.0.1:{port}/-/ready")
    rem.start()
    rem.wait_ready(60)
    probe = sa.create_engine(db_url)

    def count(sql: str) -> int:
        with probe.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    bodies = notifications(args.alerts, uuid.uuid4().hex)
    drained = False
    try:
        cpu0 = cpu_seconds(rem.pid)
        t0 = time.perf_counter()
        statuses = asyncio.run(burst(f"http://127.0.0.1:{port}/api/v1/alerts", token, bodies))
        t_acked = time.perf_counter() - t0
        print(f"burst: {args.alerts} alerts in {len(bodies)} notifications acknowledged in "
              f"{t_acked:.1f}s (statuses {statuses})", flush=True)
        last = time.perf_counter()
        while time.perf_counter() - t0 < args.timeout:
            pending = count("SELECT count(*) FROM incidents WHERE state IN ('open', 'remediating')")
            total = count("SELECT count(*) FROM incidents")
            if total >= args.alerts and pending == 0:
                drained = True
                break
            if time.perf_counter() - last >= 10:
                last = time.perf_counter()
                done = count("SELECT count(*) FROM attempts WHERE state = 'succeeded'")
                print(f"  {time.perf_counter() - t0:6.1f}s: {done} runs done, {pending} incidents "
                      f"pending, load {os.getloadavg()[0]:.1f}", flush=True)
            time.sleep(0.2)
        drain = time.perf_counter() - t0
        cpu = cpu_seconds(rem.pid) - cpu0
        runs = count("SELECT count(*) FROM attempts WHERE state = 'succeeded'")
        twice = count("SELECT count(*) FROM (SELECT incident_id FROM attempts WHERE state "
                      "IN ('queued', 'running', 'succeeded', 'failed') GROUP BY incident_id "
                      "HAVING count(*) > 1) t")
        held = count("SELECT count(*) FROM incidents WHERE reason LIKE 'blast radius%'")
        with probe.connect() as conn:
            states = {str(k): int(v) for k, v in conn.execute(sa.text(
                "SELECT state, count(*) FROM incidents GROUP BY state")).all()}
    finally:
        rem.stop()
        probe.dispose()
        sink.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    # every alert not held by the blast radius should run once
    ideal = (args.alerts - held) * (args.step_ms / 1000) / args.concurrency
    print(f"\nstorm: {args.alerts} matched alerts, step {args.step_ms:g} ms, concurrency "
          f"{args.concurrency}, blast radius {blast or 'off'}")
    print(f"incidents by state: {states}")
    print(f"drained: {'yes' if drained else f'NO (gave up after {args.timeout:g}s)'}; "
          f"{runs} runs in {drain:.1f}s ({runs / drain:.1f} runs/s)")
    ratio = f"{drain / ideal:.2f}" if drained and ideal else f"> {drain / ideal:.2f} (not drained)"
    print(f"ideal ((alerts - held) x step / concurrency): {ideal:.1f}s; drain / ideal = "
          f"{ratio} (target <= 2)")
    print(f"remediator CPU: {cpu:.1f}s, {1000 * cpu / max(runs, 1):.1f} ms per run")
    print(f"held back by the blast radius: {held} incidents; escalations sent: "
          f"{len(sink.received)}")
    print(f"incidents with more than one attempt: {twice}")
    print(f"machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"(logs in {workdir})")
    return 0 if drained and twice == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
