"""Benchmark the remediator's webhook: sustained notifications/s and ack latency.

Posts Alertmanager payloads (version 4, one new alert each) at rising open-loop rates against
`vigil-remediator` backed by PostgreSQL, and against a bare aiohttp handler that answers 200
without doing anything, in the same run. Both servers are separate processes; this process
only generates load. A 2xx from the remediator means the notification is committed, so the
rows counted in the database at the end must equal the 2xx answers.

    .venv/bin/python bench/bench_remediator.py [--quick] [--database-url URL]

Targets (issue 7): >= 1000 notifications/s durably stored on a 2-core machine, and
p99 < 50 ms at 500/s. Each step also prints the machine's 1-minute load average: the load
generator, both servers and PostgreSQL share the machine's cores with whatever else runs,
so compare figures taken at similar loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
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

BARE_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.Response(text="ok")
app = web.Application()
app.router.add_post("/api/v1/alerts", ok)
app.router.add_get("/-/ready", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def payload(i: int, run: str) -> bytes:
    fp = f"{uuid.uuid5(uuid.NAMESPACE_OID, f'{run}-{i}').hex[:16]}"
    return json.dumps({
        "version": "4", "groupKey": f"{{}}:{{alertname=\"BenchAlert\", n=\"{i}\"}}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "vigil-remediator", "groupLabels": {"alertname": "BenchAlert"},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "fingerprint": fp,
                    "labels": {"alertname": "BenchAlert", "instance": f"10.0.0.{i % 250}:8080",
                               "job": "demo", "severity": "warning", "n": str(i)},
                    "annotations": {"summary": "Benchmark alert."},
                    "startsAt": "2026-11-26T10:00:00.000000000Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph"}],
    }).encode()


async def run_rate(url: str, token: str | None, rate: float, duration: float, run: str,
                   start_index: int, max_in_flight: int = 512) -> dict[str, Any]:
    """Open-loop load: request i is due at t0 + i/rate, whatever happened to earlier ones."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    slots = asyncio.Semaphore(max_in_flight)
    total = int(rate * duration)
    bodies = [payload(start_index + i, run) for i in range(total)]
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(body: bytes) -> None:
            nonlocal errors
            async with slots:
                t = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    return
                latencies.append(time.perf_counter() - t)

        tasks = []
        t0 = time.perf_counter()
        for i, body in enumerate(bodies):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    latencies.sort()
    ok = statuses.get(200, 0)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"rate": rate, "sent": total, "ok": ok, "statuses": statuses, "errors": errors,
            "throughput": ok / elapsed, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan")}


def start(name: str, argv: list[str], port: int, workdir: Path) -> ManagedProcess:
    proc = ManagedProcess(name=name, argv=argv, log_path=workdir / f"{name}.log",
                          ready_url=f"http://127.0.0.1:{port}/-/ready")
    proc.start()
    proc.wait_ready(60)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get(
        "VIGIL_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--quick", action="store_true", help="fewer rates, shorter steps")
    parser.add_argument("--duration", type=float, default=None, help="seconds per rate step")
    parser.add_argument("--rates", default=None, help="comma-separated rates (notifications/s)")
    parser.add_argument("--writers", type=int, default=None,
                        help="the remediator's store_writers (default: its own default)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")] if args.rates else (
        [250, 500, 1000, 1500] if args.quick else [250, 500, 1000, 1500, 2000, 3000])
    duration = args.duration or (4.0 if args.quick else 8.0)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-remediator-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(make_url(args.database_url).set(drivername="postgresql+psycopg2"))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db_url = make_url(args.database_url).set(drivername="postgresql+psycopg2").update_query_dict(
        {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    token = secrets.token_urlsafe(24)
    (workdir / "token").write_text(token)
    config = workdir / "remediator.yml"
    config.write_text(yaml.safe_dump({
        "database_url": db_url, "replica_id": "bench",
        **({"store_writers": args.writers} if args.writers else {}),
        "webhook": {"bearer_token_file": str(workdir / "token")},
        # alerts match no procedure: this measures receiving, storing and deduplicating
        "procedures": []}))
    rem_port, bare_port = free_port(), free_port()
    procs = [
        start("remediator", [sys.executable, "-m", "vigil.remediator.service", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{rem_port}", "--log.level=warn"],
              rem_port, workdir),
        start("bare-aiohttp", [sys.executable, "-c", BARE_SERVER, str(bare_port)], bare_port, workdir),
    ]
    run = uuid.uuid4().hex
    results: dict[str, list[dict[str, Any]]] = {"remediator": [], "bare": []}
    try:
        index = 0
        for rate in rates:
            for name, port, tok in (("bare", bare_port, None), ("remediator", rem_port, token)):
                r = asyncio.run(run_rate(f"http://127.0.0.1:{port}/api/v1/alerts", tok, rate, duration,
                                         run, index))
                if name == "remediator":
                    index += r["sent"]
                results[name].append(r)
                r["load"] = os.getloadavg()[0]
                print(f"  {name:<10} offered {rate:>6.0f}/s  achieved {r['throughput']:>7.1f}/s  "
                      f"p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>8.2f} ms  "
                      f"statuses {r['statuses']} errors {r['errors']}  load {r['load']:.1f}",
                      flush=True)
        acked = sum(r["ok"] for r in results["remediator"])
        probe = sa.create_engine(db_url)
        with probe.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM notifications")).scalar_one()
            alerts = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
        probe.dispose()
    finally:
        for p in procs:
            p.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    def sustained(rows: list[dict[str, Any]]) -> float:
        """Highest achieved throughput among steps that kept up (>= 95% of offered, no errors)."""
        good = [r["throughput"] for r in rows
                if r["throughput"] >= 0.95 * r["rate"] and r["errors"] == 0 and r["ok"] == r["sent"]]
        return max(good) if good else 0.0

    rem, bare = sustained(results["remediator"]), sustained(results["bare"])
    print("\nresults (one new alert per notification, PostgreSQL store, 2xx = committed)")
    print(f"{'rate/s':>8} {'rem p50':>9} {'rem p99':>9} {'bare p50':>9} {'bare p99':>9} "
          f"{'p99 ratio':>10} {'load':>5}")
    for r, b in zip(results["remediator"], results["bare"], strict=True):
        print(f"{r['rate']:>8.0f} {r['p50_ms']:>8.2f}ms {r['p99_ms']:>8.2f}ms {b['p50_ms']:>8.2f}ms "
              f"{b['p99_ms']:>8.2f}ms {r['p99_ms'] / b['p99_ms']:>9.1f}x {r['load']:>5.1f}")
    peak_rem = max(r["throughput"] for r in results["remediator"])
    peak_bare = max(r["throughput"] for r in results["bare"])
    print(f"\nsustained (kept up with the offered rate): remediator {rem:.0f} notifications/s, "
          f"bare aiohttp {bare:.0f}/s (ratio {rem / bare if bare else float('nan'):.2f})")
    print(f"peak achieved: remediator {peak_rem:.0f}/s, bare aiohttp {peak_bare:.0f}/s "
          f"(ratio {peak_rem / peak_bare:.2f})")
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; the load column is the same after each remediator step (other work on the machine "
          "takes the CPU these figures need)")
    print(f"durability: {acked} acknowledged, {stored} notifications and {alerts} alerts stored "
          f"({'OK' if stored >= acked else 'LOST NOTIFICATIONS'})")
    at500 = [r for r in results["remediator"] if r["rate"] == 500]
    if at500:
        print(f"p99 at 500/s: {at500[0]['p99_ms']:.1f} ms (target < 50 ms: "
              f"{'met' if at500[0]['p99_ms'] < 50 else 'NOT met'})")
    print(f"target >= 1000/s durably stored: {'met' if rem >= 1000 else 'NOT met'}")
    print(f"(logs in {workdir})")
    return 0 if stored >= acked else 1


if __name__ == "__main__":
    sys.exit(main())
