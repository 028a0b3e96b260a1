"""Soak: notifications at a steady rate against two remediator replicas on one PostgreSQL.

Every alert is sent to BOTH replicas (what two Alertmanagers in a cluster, or one with two
webhook URLs, do), one new alert per notification, open loop at `--rate` per second for
`--minutes`. Each alert's procedure POSTs `/log/<id>` to a recording server in this process.
At the end it reports:

- throughput (acknowledged notifications/s) and p50/p99/max acknowledgement latency,
- memory (RSS) of each replica after warm-up and at the end, and the growth between,
- lost alerts (acknowledged but no incident, or no procedure run) and duplicated ones
  (a procedure run more than once): both must be 0,
- ratios against baselines measured in the same run: p99 ack latency against the p99 of
  `GET /-/healthy` on the same replicas at the same time (what storing costs over the bare
  HTTP round trip), and achieved against offered rate.

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--rate 20] [--quick] [--database-url URL]

`--quick` is one minute. The database is a fresh schema in `--database-url` (default
VIGIL_TEST_DATABASE_URL, else postgresql://postgres@127.0.0.1:5432/test), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.helpers import (
    WEBHOOK_AUTH,
    Recorder,
    remediator_config,
    remediator_process,
)
from vigil.db import normalize_url


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def payload(i: int, run: str) -> bytes:
    fp = uuid.uuid5(uuid.NAMESPACE_OID, f"{run}-{i}").hex[:16]
    return json.dumps({
        "version": "4", "groupKey": f'{{}}:{{alertname="SoakAlert", id="{i}"}}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "vigil-remediator", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "fingerprint": fp,
                    "labels": {"alertname": "SoakAlert", "id": str(i), "severity": "warning"},
                    "annotations": {"summary": "soak"}, "startsAt": "2026-11-26T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph"}],
    }).encode()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def load(urls: list[str], rate: float, seconds: float, run: str, first_id: int = 0
               ) -> dict[str, Any]:
    """Open loop: alert i is due at t0 + i/rate, whether or not earlier ones were answered."""
    ack: list[float] = []
    health: list[float] = []
    statuses: dict[int, int] = {}
    failures: list[str] = []
    acked: set[int] = set()
    headers = {**WEBHOOK_AUTH, "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=256)) as session:

        async def post(url: str, i: int, body: bytes) -> None:
            t = time.perf_counter()
            try:
                async with session.post(f"{url}/api/v1/alerts", data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if resp.status == 200:
                        ack.append(time.perf_counter() - t)
                        acked.add(i)
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append(exc.__class__.__name__)

        async def ping(url: str) -> None:
            t = time.perf_counter()
            try:
                async with session.get(f"{url}/-/healthy") as resp:
                    await resp.read()
                health.append(time.perf_counter() - t)
            except (aiohttp.ClientError, TimeoutError):
                pass

        tasks: list[asyncio.Task[None]] = []
        t0 = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = payload(first_id + i, run)
            for url in urls:
                tasks.append(asyncio.create_task(post(url, i, body)))
                tasks.append(asyncio.create_task(ping(url)))
            if len(tasks) > 4096:
                tasks = [t for t in tasks if not t.done()]
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {"ack": ack, "health": health, "statuses": statuses, "failures": failures,
            "acked": acked, "sent": total, "elapsed": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0, help="alerts per second (each sent twice)")
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--database-url", default=os.environ.get(
        "VIGIL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes
    server = normalize_url(args.database_url).render_as_string(hide_password=False)
    schema = f"soak_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db_url = make_url(server).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-soak-"))
    recorder = Recorder().start()
    procs = []
    try:
        procedure = {"name": "append-log", "match": ['alertname="SoakAlert"'], "cooldown": 0,
                     "max_concurrent": 8, "params": {"id": {"label": "id", "pattern": "[0-9]{1,9}"}},
                     "target": "soak-${id}",
                     "steps": [{"action": "http", "url": f"{recorder.url}/log/${{id}}", "retries": 0}]}
        specs = [remediator_config(workdir, db_url, r, [procedure]) for r in ("soak-a", "soak-b")]
        for spec in specs:
            proc = remediator_process(spec, workdir).start()
            proc.wait_ready(60)
            procs.append(proc)
        urls = [s.url for s in specs]
        run = uuid.uuid4().hex[:8]
        # warm-up: 10 s at the same rate, then memory is measured from a settled process
        warm_alerts = int(args.rate * 10)
        asyncio.run(load(urls, args.rate, 10, run))
        rss_start = [rss(p.pid) for p in procs]
        print(f"soak: {minutes:g} min at {args.rate:g} alerts/s, each to 2 replicas "
              f"({2 * args.rate:g} notifications/s)", flush=True)
        result = asyncio.run(load(urls, args.rate, minutes * 60, run, first_id=warm_alerts))
        rss_end_load = [rss(p.pid) for p in procs]
        # let the last procedures finish, then count
        expected = warm_alerts + result["sent"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(recorder.counts()) < expected:
            time.sleep(0.5)
        time.sleep(3)
        counts = recorder.counts()
        engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            incidents = int(conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar_one())
            resolved = int(conn.execute(sa.text(
                "SELECT count(*) FROM incidents WHERE state = 'resolved'")).scalar_one())
            attempts = int(conn.execute(sa.text("SELECT count(*) FROM attempts")).scalar_one())
        engine.dispose()
        # every alert (warm-up and soak) has its own id: each must have run exactly once
        lost = sum(1 for i in range(expected) if str(i) not in counts)
        duplicated = sum(1 for n in counts.values() if n > 1)
        ack, health = result["ack"], result["health"]
        acked_notes = len(ack)
        throughput = acked_notes / result["elapsed"]
        offered = 2 * args.rate
        print(f"notifications: {2 * result['sent']} sent, {acked_notes} acknowledged, statuses "
              f"{result['statuses']}, transport failures {len(result['failures'])}")
        print(f"throughput: {throughput:.1f} notifications/s acknowledged (offered {offered:g}/s); "
              f"ratio achieved/offered {throughput / offered:.3f}")
        print(f"ack latency: p50 {pct(ack, 0.5) * 1000:.1f} ms, p99 {pct(ack, 0.99) * 1000:.1f} ms, "
              f"max {max(ack, default=0) * 1000:.1f} ms")
        print(f"baseline GET /-/healthy: p50 {pct(health, 0.5) * 1000:.1f} ms, "
              f"p99 {pct(health, 0.99) * 1000:.1f} ms; ratio p99 ack / p99 healthy "
              f"{pct(ack, 0.99) / pct(health, 0.99):.2f}")
        for name, start, end in zip(("soak-a", "soak-b"), rss_start, rss_end_load, strict=True):
            print(f"memory {name}: {start / 2**20:.1f} MiB after warm-up -> {end / 2**20:.1f} MiB at the "
                  f"end ({(end - start) / 2**20:+.1f} MiB, {(end - start) / max(minutes, 1e-9) / 2**20:+.2f} "
                  f"MiB/min; ratio end/start {end / start:.3f})")
        print(f"store: {incidents} incidents ({resolved} resolved), {attempts} attempts, "
              f"for {expected} distinct alerts")
        print(f"lost alerts: {lost}; duplicated procedure runs: {duplicated}")
        ok = lost == 0 and duplicated == 0 and incidents == expected and attempts == expected
        print("RESULT:", "OK (zero lost, zero duplicated)" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        for proc in procs:
            proc.stop()
        recorder.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
