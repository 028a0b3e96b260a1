"""Every preset against the real thing: tiny apps built with each HTTP library, Debian's
node_exporter, postgres_exporter and blackbox_exporter, scraped by a real Prometheus that
evaluates the rules `vigil rules generate` renders for them.

Each generated recording rule must return data for every service, and the alerts fire on
conditions produced for real: a size-limited tmpfs filled, PostgreSQL connections held up
to the limit on a cluster this test starts, a probed server stopped, a certificate close to
expiry, memory allocated, a process restarted, errors and latency raised, the database
stopped. Alerts get `for: 1s` (scrapes and evaluations run every second); expressions and
windows are the generated ones. Alerts whose expression needs history this short run cannot
have (an `offset 30m`, a week of data) are covered by the promtool tests only.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
import yaml

from tests.harness import REPO_ROOT, prom_alerts, prom_query, require_binary, wait_for
from tests.rules.rulefiles import time_compressed_copy
from vigil.procs import ManagedProcess, free_port, prometheus_config, start_prometheus
from vigil.rulegen import GENERATED_FILES, promtool_check, render, write
from vigil.spec import ServiceSpec, parse_spec

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HTTP_APPS = {  # service -> (library in tests/services/apps.py, preset)
    "fastapi": ("fastapi", "prometheus-fastapi-instrumentator"),
    "starlette": ("starlette", "starlette_exporter"),
    "flask": ("flask", "prometheus-flask-exporter"),
    "django": ("django", "django-prometheus"),
    "otel": ("opentelemetry", "opentelemetry"),
}
MEMORY_LIMIT = 1 << 30  # the limit a container runtime would give the Flask app


@dataclass
class Stack:
    prometheus: str
    spec: ServiceSpec
    workdir: Path
    apps: dict[str, ManagedProcess]
    ports: dict[str, int]
    pg_port: int
    pg_data: Path
    fill_dir: Path
    down_server: ManagedProcess
    procs: list[ManagedProcess] = field(default_factory=list)

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"


def _proc(workdir: Path, name: str, argv: list[str], ready: str | None = None,
          env: dict[str, str] | None = None) -> ManagedProcess:
    return ManagedProcess(name=name, argv=argv, log_path=workdir / "logs" / f"{name}.log",
                          ready_url=ready, env=env, cwd=REPO_ROOT).start()


def _app(workdir: Path, service: str, port: int, metrics_port: int = 0,
         env: dict[str, str] | None = None) -> ManagedProcess:
    library = HTTP_APPS.get(service, ("starlette", ""))[0]
    argv = [sys.executable, "-m", "tests.services.apps", library, str(port)]
    if library == "opentelemetry":
        argv.append(str(metrics_port))
        env = {**(env or {}), "OTEL_SEMCONV_STABILITY_OPT_IN": "http"}
    scheme = "https" if env and "VIGIL_TEST_TLS_CERT" in env else "http"
    ready = None if scheme == "https" else f"http://127.0.0.1:{port}/items/1"
    return _proc(workdir, service, argv, ready, env)


def _postgres(workdir: Path, port: int) -> Path:
    """A PostgreSQL 15 cluster of its own, run as the postgres user, 8 connections at most."""
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            require_binary(str(PG_BIN / tool))
    data = workdir / "pg"
    data.mkdir()
    shutil.chown(workdir, "postgres")
    shutil.chown(data, "postgres")

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True,
                       timeout=120, cwd="/tmp")

    as_postgres(str(PG_BIN / "initdb"), "-D", str(data / "data"), "-A", "trust", "-U", "postgres")
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data / "data"), "-l", str(data / "log"), "-w",
                "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=8",
                "start")
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    conn.autocommit = True
    conn.cursor().execute("CREATE ROLE app LOGIN")
    conn.close()
    return data


def _stop_postgres(data: Path) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data / "data"),
                    "-m", "fast", "-w", "stop"], capture_output=True, timeout=60, cwd="/tmp", check=False)


def _spec(fill_dir: Path, probe_down: str, probe_tls: str) -> dict[str, Any]:
    services: dict[str, Any] = {name: {"http": {"preset": preset}} for name, (_, preset) in HTTP_APPS.items()}
    services["fastapi"]["resources"] = {
        "memory": {"preset": "node_exporter", "job": "node"},
        "disk": {"preset": "node_exporter", "job": "node", "selector": f'{{mountpoint="{fill_dir}"}}'}}
    services["fastapi"]["depends_on"] = ["db"]
    services["fastapi"]["slo"] = {"objective": 0.995}
    services["flask"]["resources"] = {
        "memory": {"preset": "process",
                   "signals": {"memory_limit": f"process_resident_memory_bytes{{<sel>}} * 0 + {MEMORY_LIMIT}"}},
        "restarts": {"preset": "process"}}
    services["db"] = {"resources": {"connections": {"preset": "postgres_exporter", "job": "postgres"}}}
    services["site"] = {"resources": {"probes": {"preset": "blackbox_exporter", "job": "blackbox",
                                                 "selector": f'{{instance=~"{probe_down}|{probe_tls}"}}'}}}
    return {"services": services}


def _tls_cert(workdir: Path) -> dict[str, str]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run([require_binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return {"VIGIL_TEST_TLS_CERT": str(cert), "VIGIL_TEST_TLS_KEY": str(key)}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    for binary in ("prometheus", "promtool", "prometheus-node-exporter", "prometheus-postgres-exporter",
                   "prometheus-blackbox-exporter", "runuser"):
        require_binary(binary)
    workdir = Path(tempfile.mkdtemp(prefix="spec_presets_"))
    procs: list[ManagedProcess] = []
    fill_dir = workdir / "fill"
    fill_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(fill_dir)], check=True, timeout=30)
    pg_data: Path | None = None
    try:
        ports = {name: free_port() for name in [*HTTP_APPS, "otel-metrics", "node", "postgres", "blackbox",
                                                "down", "tls"]}
        for name in HTTP_APPS:
            procs.append(_app(workdir, name, ports[name], ports["otel-metrics"]))
        tls = _app(workdir, "tls", ports["tls"], env=_tls_cert(workdir))
        down = _proc(workdir, "down", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                       str(ports["down"])], f"http://127.0.0.1:{ports['down']}/")
        procs += [tls, down]
        pg_port = free_port()
        pg_data = _postgres(workdir, pg_port)
        procs.append(_proc(workdir, "node", [
            "prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{ports['node']}",
            "--collector.disable-defaults", "--collector.filesystem", "--collector.meminfo"],
            f"http://127.0.0.1:{ports['node']}/metrics"))
        procs.append(_proc(workdir, "postgres_exporter", [
            "prometheus-postgres-exporter", f"--web.listen-address=127.0.0.1:{ports['postgres']}"],
            f"http://127.0.0.1:{ports['postgres']}/metrics",
            env={"DATA_SOURCE_NAME": f"postgresql://postgres@127.0.0.1:{pg_port}/postgres?sslmode=disable"}))
        blackbox_yml = workdir / "blackbox.yml"
        blackbox_yml.write_text(yaml.safe_dump({"modules": {"http_2xx": {
            "prober": "http", "timeout": "1s",
            "http": {"preferred_ip_protocol": "ip4", "tls_config": {"insecure_skip_verify": True}}}}}))
        procs.append(_proc(workdir, "blackbox", [
            "prometheus-blackbox-exporter", f"--config.file={blackbox_yml}",
            f"--web.listen-address=127.0.0.1:{ports['blackbox']}"], f"http://127.0.0.1:{ports['blackbox']}/metrics"))
        for proc in procs:
            proc.wait_ready(60)

        probe_down = f"http://127.0.0.1:{ports['down']}/"
        probe_tls = f"https://127.0.0.1:{ports['tls']}/items/1"
        spec = parse_spec(_spec(fill_dir, probe_down, probe_tls))
        files = render(spec)
        promtool_check(files)
        rules_dir = workdir / "rules"
        write(files, rules_dir)
        fast = time_compressed_copy(workdir / "fast-rules", paths=[rules_dir / n for n in GENERATED_FILES])
        targets = {name: [f"127.0.0.1:{ports[name]}"] for name in HTTP_APPS if name != "otel"}
        targets |= {"otel": [f"127.0.0.1:{ports['otel-metrics']}"], "node": [f"127.0.0.1:{ports['node']}"],
                    "postgres": [f"127.0.0.1:{ports['postgres']}"]}
        blackbox_job = {
            "job_name": "blackbox", "metrics_path": "/probe", "params": {"module": ["http_2xx"]},
            "static_configs": [{"targets": [probe_down, probe_tls]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{ports['blackbox']}"}]}
        # postgres_exporter needs about a second to find the server gone
        slow = {"postgres": {"scrape_interval": "2s", "scrape_timeout": "2s"}}
        config = prometheus_config(targets, rule_files=fast, extra_scrape_configs=[blackbox_job],
                                   job_settings=slow)
        prom, url = start_prometheus(workdir / "prometheus", config)
        procs.append(prom)
        prom.wait_ready(60)
        apps = {name: procs[i] for i, name in enumerate(HTTP_APPS)}
        stack = Stack(url, spec, workdir, apps, ports, pg_port, pg_data, fill_dir, down, procs)
        stop = threading.Event()
        traffic = threading.Thread(target=_traffic, args=(stack, stop), daemon=True)
        traffic.start()
        try:
            yield stack
        finally:
            stop.set()
            traffic.join(30)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if pg_data is not None:
            _stop_postgres(pg_data)
        subprocess.run(["umount", str(fill_dir)], check=False, timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def _traffic(stack: Stack, stop: threading.Event) -> None:
    """Each app, until stopped: mostly fine answers, 2 in 10 a 500, 1 in 10 slower than 500ms."""
    paths = ["/items/1", "/items/5", "/items/2", "/slow/700", "/items/3", "/items/5", "/items/4"] + \
        ["/items/1"] * 3

    def hit(service: str) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                for path in paths:
                    try:
                        session.get(stack.url(service, path), timeout=5)
                    except requests.RequestException:
                        time.sleep(0.2)  # the app is being restarted by a test

    with concurrent.futures.ThreadPoolExecutor(len(HTTP_APPS)) as pool:
        list(pool.map(hit, HTTP_APPS))


def _firing(stack: Stack, alertname: str, target: str) -> dict[str, Any] | None:
    for alert in prom_alerts(stack.prometheus):
        labels = alert["labels"]
        if labels.get("alertname") == alertname and labels.get("target") == target and alert["state"] == "firing":
            return alert
    return None


def _records(stack: Stack) -> dict[str, str]:
    """Every recording rule of the generated files -> the label that names its service."""
    out = {}
    for name in GENERATED_FILES:
        path = stack.workdir / "rules" / name
        if not path.exists():
            continue
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    out[rule["record"]] = "target" if rule["record"].startswith("target:") \
                        or rule["record"] == "vigil:service_dependency:info" else "job"
    return out


def _expected(stack: Stack, record: str) -> set[str]:
    """The services a recording rule must return data for, from the spec."""
    spec = stack.spec
    if record.startswith(("job", "vigil:slo")):
        return {n for n, s in spec.services.items() if s.http is not None}
    if record == "vigil:service_dependency:info":
        return {n for n, s in spec.services.items() if s.depends_on}
    from vigil.rulegen import SIGNAL_RECORDS
    signal = next((s for s, r in SIGNAL_RECORDS.items() if r == record), "connections_used")
    return {n for n in spec.services
            if any(signal in spec.signals_of(n, c) for c in ("memory", "disk", "connections", "probes",
                                                               "restarts"))}


def test_every_generated_recording_rule_returns_data_for_every_service(stack: Stack) -> None:
    records = _records(stack)
    assert len(records) >= 30

    def missing() -> list[str]:
        gaps = []
        for record, label in records.items():
            have = {r["metric"].get(label) for r in prom_query(stack.prometheus, record)}
            gaps += [f"{record}{{{label}={svc}}}" for svc in sorted(_expected(stack, record) - have)]
        return gaps

    try:
        wait_for(lambda: not missing(), timeout=60, interval=1, what="every recording rule")
    except AssertionError:
        pytest.fail(f"recording rules without data: {missing()}")
    # the values are the real ones: the objective from the spec, ratios inside [0, 1]
    objective = {r["metric"]["job"]: float(r["value"][1])
                 for r in prom_query(stack.prometheus, "vigil:slo_objective:ratio")}
    assert objective["fastapi"] == 0.995
    assert objective["flask"] == 0.999
    ratios = 'job:http_request_errors:ratio_rate5m > 0 < 0.5'
    wait_for(lambda: len(prom_query(stack.prometheus, ratios)) == len(HTTP_APPS), timeout=60,
             what="an error ratio between 0 and 0.5 for every app")
    max_conn = prom_query(stack.prometheus, 'target:connections_max:count{target="db"}')
    assert float(max_conn[0]["value"][1]) == 5  # max_connections 8 - 3 reserved for superusers


@pytest.mark.parametrize("alertname", ["TargetErrorRateHigh", "TargetLatencyDegraded",
                                       "ErrorBudgetBurnFast", "ErrorBudgetBurnSlow"])
def test_http_alerts_fire_on_real_errors_and_latency(stack: Stack, alertname: str) -> None:
    for service in HTTP_APPS:
        wait_for(lambda s=service: _firing(stack, alertname, s), timeout=60,  # type: ignore[misc]
                 interval=0.5, what=f"{alertname} for {service}")


def test_disk_fill_predicted_on_a_filling_tmpfs(stack: Stack) -> None:
    for i in range(6):
        (stack.fill_dir / f"block{i}").write_bytes(os.urandom(1 << 20))
        time.sleep(1)
    alert = wait_for(lambda: _firing(stack, "TargetDiskFillPredicted", "fastapi"), timeout=30,
                     what="TargetDiskFillPredicted")
    assert alert["labels"]["mountpoint"] == str(stack.fill_dir)


def test_connections_held_up_to_the_limit(stack: Stack) -> None:
    held: list[Any] = []
    try:
        while len(held) < 10:
            try:
                held.append(psycopg2.connect(host="127.0.0.1", port=stack.pg_port, user="app",
                                             dbname="postgres", connect_timeout=5))
            except psycopg2.OperationalError as exc:
                assert "reserved" in str(exc) or "too many" in str(exc), exc
                break
        assert 0 < len(held) < 10, "PostgreSQL refused no connection below its limit"
        wait_for(lambda: _firing(stack, "TargetDbPoolExhausted", "db"), timeout=30,
                 what="TargetDbPoolExhausted")
    finally:
        for conn in held:
            conn.close()


def test_probe_failing_when_the_probed_server_stops(stack: Stack) -> None:
    up = 'target:probe_success:bool{target="site"} == 1'
    wait_for(lambda: len(prom_query(stack.prometheus, up)) == 2, timeout=30, what="both probes succeeding")
    stack.down_server.stop()
    alert = wait_for(lambda: _firing(stack, "TargetProbeFailing", "site"), timeout=30, what="TargetProbeFailing")
    assert alert["labels"]["instance"].startswith("http://127.0.0.1:")


def test_certificate_expiring_from_a_real_tls_probe(stack: Stack) -> None:
    alert = wait_for(lambda: _firing(stack, "TargetProbeCertificateExpiring", "site"), timeout=30,
                     what="TargetProbeCertificateExpiring")
    assert alert["labels"]["instance"].startswith("https://")
    assert 0 < float(alert["value"]) < 3 * 86400  # the certificate was made for 2 days


def test_memory_growth_towards_the_limit(stack: Stack) -> None:
    for _ in range(5):
        requests.get(stack.url("flask", "/alloc/40"), timeout=30).raise_for_status()
        time.sleep(1)
    wait_for(lambda: _firing(stack, "TargetMemoryExhaustionPredicted", "flask"), timeout=30,
             what="TargetMemoryExhaustionPredicted")


def test_restarts_of_a_real_process(stack: Stack) -> None:
    app = stack.apps["flask"]
    for _ in range(3):
        app.stop()
        app.start().wait_ready(30)
        time.sleep(2)  # a scrape of each new process
    wait_for(lambda: _firing(stack, "TargetRestarting", "flask"), timeout=30, what="TargetRestarting")


def test_database_down_when_postgres_stops(stack: Stack) -> None:
    _stop_postgres(stack.pg_data)
    wait_for(lambda: _firing(stack, "TargetDatabaseDown", "db"), timeout=30, what="TargetDatabaseDown")
