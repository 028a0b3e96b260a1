"""Benchmark: one full exporter scrape (10 origins x 7 methods of CORS preflights, the
look-alike origins derived from them, plus 20 endpoints) against the demo target, compared
with one GET /metrics of the demo target.

    .venv/bin/python bench/bench_exporter.py [--quick] [--scrapes N]

Prints p50/p99 of both, their ratios (the goal: a fresh scrape within 10x the baseline), and
proof that probes run concurrently: the peak number of requests in flight, and the wall time
of the same CORS check with concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from vigil.demo.client import start_demo_target
from vigil.exporter.config import parse_config
from vigil.exporter.cors import CorsCheck
from vigil.exporter.endpoints import EndpointsCheck
from vigil.exporter.runner import CheckRunner

from vigil.procs import ManagedProcess, free_port

ORIGINS = [f"https://app{i}.example.com" for i in range(10)]
ROUTES = ["/api/v1/items", "/api/v1/users", "/api/v1/orders/summary", "/api/v1/quote", "/-/healthy"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def exporter_config(url: str, api_key_file: Path, concurrency: int = 32) -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": "demo",
                "base_url": url,
                "headers_from_file": {"X-API-Key": str(api_key_file)},
                "cors": {
                    "path": "/api/v1/items",
                    "origins": ORIGINS,
                    "concurrency": concurrency,
                    "request_headers": ["Content-Type", "X-API-Key"],
                },
                "endpoints": {
                    "concurrency": concurrency,
                    "items": [
                        {
                            "name": f"ep{i:02d}",
                            "path": ROUTES[i % len(ROUTES)],
                            "latency_budget": 1.0,
                        }
                        for i in range(20)
                    ],
                },
            }
        ]
    }


def timed_gets(session: requests.Session, url: str, n: int, headers: dict[str, str]) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        resp = session.get(url, headers=headers, timeout=30)
        resp.raise_for_status()
        out.append(time.perf_counter() - start)
    return out


async def concurrency_proof(data: dict[str, Any]) -> tuple[int, int, float, float]:
    """(peak in flight, requests, wall time concurrent, wall time with concurrency 1)."""
    config = parse_config(data)
    target = config.targets[0]
    assert target.cors is not None
    check = CorsCheck(target, target.cors)
    start = time.perf_counter()
    await check(30)
    concurrent = time.perf_counter() - start
    await check.aclose()
    assert check.last_probe is not None
    peak, count = check.last_probe.max_in_flight, check.last_probe.requests
    serial_cfg = target.cors.model_copy(update={"concurrency": 1})
    serial = CorsCheck(target, serial_cfg)
    start = time.perf_counter()
    await serial(60)
    serial_seconds = time.perf_counter() - start
    await serial.aclose()
    return peak, count, concurrent, serial_seconds


async def endpoints_with_latency(data: dict[str, Any]) -> tuple[float, float]:
    """Wall time of the 20-endpoint check, concurrent vs concurrency 1 (target latency on)."""
    config = parse_config(data)
    target = config.targets[0]
    assert target.endpoints is not None
    out = []
    for concurrency in (target.endpoints.concurrency, 1):
        cfg = target.endpoints.model_copy(update={"concurrency": concurrency})
        runner = CheckRunner([EndpointsCheck(target, cfg)])
        start = time.perf_counter()
        await runner.refresh(60)
        out.append(time.perf_counter() - start)
        await runner.close()
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about 20 s)")
    parser.add_argument("--scrapes", type=int, default=None, help="scrapes to time")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="cors.concurrency and endpoints.concurrency (default: 8)",
    )
    args = parser.parse_args()
    n = args.scrapes or (20 if args.quick else 100)
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-exporter-"))
    target = start_demo_target(work / "demo", config={"cors": {"allow_origins": ORIGINS}})
    procs: list[ManagedProcess] = [target.process]
    try:
        target.process.wait_ready(30)
        data = exporter_config(target.url, target.state_dir / "api-key", args.concurrency)
        config_path = work / "exporter.yml"
        config_path.write_text(yaml.safe_dump(data))
        port = free_port()
        exporter = ManagedProcess(
            name="vigil-exporter",
            argv=[
                sys.executable,
                "-c",
                "from vigil.exporter.service import main; main()",
                f"--config.file={config_path}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            log_path=work / "exporter.log",
            ready_url=f"http://127.0.0.1:{port}/-/ready",
        )
        procs.append(exporter.start())
        exporter.wait_ready(30)

        session = requests.Session()
        header = {"X-Prometheus-Scrape-Timeout-Seconds": "10"}
        timed_gets(session, f"{target.url}/metrics", 5, {})  # warm up both
        first = session.get(f"http://127.0.0.1:{port}/metrics", headers=header, timeout=30).text
        assert 'vigil_check_success{check="cors",target="demo"} 1.0' in first, first[:2000]
        assert 'vigil_check_success{check="endpoints",target="demo"} 1.0' in first
        probes = first.count("vigil_cors_preflight_allowed{")
        # Interleaved, so both series see the same load on this shared machine.
        baseline, scrape = [], []
        for _ in range(n):
            baseline += timed_gets(session, f"{target.url}/metrics", 1, {})
            scrape += timed_gets(session, f"http://127.0.0.1:{port}/metrics", 1, header)
        peak, count, concurrent, serial = asyncio.run(concurrency_proof(data))
        target.inject(latency_seconds=0.05)
        ep_conc, ep_serial = asyncio.run(endpoints_with_latency(data))
        target.clear()

        b50, b99 = pct(baseline, 50) * 1e3, pct(baseline, 99) * 1e3
        s50, s99 = pct(scrape, 50) * 1e3, pct(scrape, 99) * 1e3
        print(
            f"exporter scrape: {len(ORIGINS)} origins x 7 methods ({probes} matrix series) "
            f"+ 20 endpoints, {n} scrapes, every check fresh (min_interval 0)"
        )
        print(
            f"  baseline GET demo /metrics : p50 {b50:7.2f} ms   p99 {b99:7.2f} ms   "
            f"mean {statistics.mean(baseline) * 1e3:.2f} ms"
        )
        print(
            f"  full exporter scrape       : p50 {s50:7.2f} ms   p99 {s99:7.2f} ms   "
            f"mean {statistics.mean(scrape) * 1e3:.2f} ms"
        )
        print(
            f"  ratio scrape/baseline      : p50 {s50 / b50:6.1f}x    p99 {s99 / b99:6.1f}x    "
            f"(goal: within 10x)"
        )
        print(
            f"  CORS check alone           : {count} requests, peak {peak} in flight, "
            f"{concurrent * 1e3:.1f} ms concurrent vs {serial * 1e3:.1f} ms with concurrency 1 "
            f"({serial / concurrent:.1f}x; against a local CPU-bound target overlap gains "
            "little: see the latency line)"
        )
        print(
            f"  20 endpoints, 50 ms target latency: {ep_conc * 1e3:.0f} ms concurrent vs "
            f"{ep_serial * 1e3:.0f} ms with concurrency 1 ({ep_serial / ep_conc:.1f}x)"
        )
        print(
            f"  load average during the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
            f"on {os.cpu_count()} CPUs"
        )
    finally:
        for proc in reversed(procs):
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
