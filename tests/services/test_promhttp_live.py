"""The promhttp preset against real Go software: Prometheus itself.

Prometheus instruments its own HTTP server with client_golang's promhttp
(InstrumentHandlerCounter/InstrumentHandlerDuration, the `handler` label curried in per route,
`code` the status), under its own metric names (prometheus_http_requests_total,
prometheus_http_request_duration_seconds). The spec here is what a Go user writes when their
names differ from the bundled preset's: a custom preset with the promhttp preset's labels and
error status and their own metric names.

A "target" Prometheus started with `--query.timeout=1ms` answers most of the queries hammered
at /api/v1/query with 503 ("query timed out"), some with 422 or 200; CPU profiles from
/debug/pprof/profile?seconds=1 take a second each. The test's Prometheus scrapes it every
second and evaluates the generated rules (alert `for` shortened to 1s): every generated HTTP
recording rule returns data, and the error, SLO burn and latency alerts fire.
"""

from __future__ import annotations

import collections
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.harness import prom_alerts, prom_query, require_binary, wait_for
from tests.rules.rulefiles import time_compressed_copy
from vigil.procs import ManagedProcess, free_port, prometheus_config, start_prometheus
from vigil.rulegen import GENERATED_FILES, promtool_check, render, write
from vigil.spec import load_presets, parse_spec

JOB = "prometheus-target"
QUERY = 'count({__name__=~".+"})'  # reads every series: longer than 1ms, mostly


@dataclass
class Target:
    prometheus: str  # the test's Prometheus, evaluating the generated rules
    target: str  # the Prometheus under test
    workdir: Path
    codes: collections.Counter[int] = field(default_factory=collections.Counter)


def _spec() -> dict[str, Any]:
    promhttp = load_presets().http["promhttp"].model_dump()
    preset = {**promhttp, "requests": "prometheus_http_requests_total",
              "duration": "prometheus_http_request_duration_seconds"}
    return {"presets": {"http": {"prometheus-server": preset}},
            "services": {JOB: {"http": {"preset": "prometheus-server"}}}}


def _hammer(target: Target, stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                resp = session.get(f"{target.target}/api/v1/query", params={"query": QUERY}, timeout=5)
                target.codes[resp.status_code] += 1
            except requests.RequestException:
                pass
            time.sleep(0.05)


def _profile(target: Target, stop: threading.Event) -> None:
    with requests.Session() as session:
        while not stop.is_set():
            try:
                session.get(f"{target.target}/debug/pprof/profile", params={"seconds": "1"}, timeout=10)
            except requests.RequestException:
                time.sleep(0.5)


@pytest.fixture(scope="module")
def stack() -> Iterator[Target]:
    for binary in ("prometheus", "promtool"):
        require_binary(binary)
    workdir = Path(tempfile.mkdtemp(prefix="spec_promhttp_"))
    procs: list[ManagedProcess] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        port = free_port()
        # the target scrapes itself as 8 jobs: a query over every series reads a few thousand
        own = {f"self{i}": [f"127.0.0.1:{port}"] for i in range(8)}
        target_proc, target_url = start_prometheus(
            workdir / "target", prometheus_config(own), port=port,
            name="target", extra_args=["--query.timeout=1ms"])
        procs.append(target_proc)
        target_proc.wait_ready(60)

        spec = parse_spec(_spec())
        files = render(spec)
        promtool_check(files)
        rules_dir = workdir / "rules"
        write(files, rules_dir)
        fast = time_compressed_copy(workdir / "fast-rules", paths=[rules_dir / n for n in GENERATED_FILES if n in files])
        config = prometheus_config({JOB: [f"127.0.0.1:{port}"]}, rule_files=fast)
        prom, url = start_prometheus(workdir / "prometheus", config)
        procs.append(prom)
        prom.wait_ready(60)

        stack = Target(url, target_url, workdir)
        threads = [threading.Thread(target=fn, args=(stack, stop), daemon=True) for fn in (_hammer, _profile)]
        for thread in threads:
            thread.start()
        yield stack
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _records(stack: Target) -> list[str]:
    out = []
    for name in GENERATED_FILES:
        path = stack.workdir / "rules" / name
        if path.exists():
            out += [rule["record"] for group in yaml.safe_load(path.read_text())["groups"]
                    for rule in group["rules"] if "record" in rule and rule["record"].startswith(("job", "vigil:slo"))]
    return out


def test_every_generated_http_recording_rule_returns_data(stack: Target) -> None:
    records = _records(stack)
    assert len(records) >= 20

    def missing() -> list[str]:
        return [r for r in records if not any(s["metric"].get("job") == JOB for s in prom_query(stack.prometheus, r))]

    try:
        wait_for(lambda: not missing(), timeout=60, interval=1, what="every HTTP recording rule")
    except AssertionError:
        pytest.fail(f"recording rules without data: {missing()}")
    # `handler` became `route`; `code` holds the status: the query endpoint fails, /metrics does not
    ratio = "job_route:http_request_errors:ratio_rate5m"
    query_ratio = wait_for(lambda: prom_query(stack.prometheus, f'{ratio}{{route="/api/v1/query"}} > 0'),
                           timeout=60, what="errors recorded on /api/v1/query")
    metrics_ratio = prom_query(stack.prometheus, f'{ratio}{{route="/metrics"}}')
    assert float(metrics_ratio[0]["value"][1]) == 0
    assert 0 < float(query_ratio[0]["value"][1]) <= 1
    assert stack.codes[503] > 0, stack.codes  # the client saw the 503s ("query timed out")
    p99 = prom_query(stack.prometheus, 'job_route_quantile:http_request_duration_seconds:histogram_quantile_5m'
                                       '{route="/debug/*subpath", quantile="0.99"}')
    assert float(p99[0]["value"][1]) > 1  # each profile takes a second


@pytest.mark.parametrize("alertname", ["TargetErrorRateHigh", "TargetLatencyDegraded",
                                       "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow"])
def test_http_alerts_fire_on_prometheus_own_errors_and_latency(stack: Target, alertname: str) -> None:
    def firing() -> bool:
        return any(a["labels"].get("alertname") == alertname and a["labels"].get("target") == JOB
                   and a["state"] == "firing" for a in prom_alerts(stack.prometheus))

    wait_for(firing, timeout=60, interval=0.5, what=f"{alertname} for {JOB}")
