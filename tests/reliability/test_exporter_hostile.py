"""The exporter against a hostile target, as a real process scraped over HTTP.

Targets: a server that drips its answer one byte at a time, one that sends a megabyte of
headers, one that redirects to another host, one with an invalid (self-signed) certificate,
and one that streams an endless body. Every scrape answers within its budget, the exporter's
memory stays bounded, the endpoint reports `vigil_endpoint_up 0`, and the probe
credentials (a header from a file and one from the environment) never reach the other host,
/metrics or the log.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.reliability.helpers import HostileServer, Recorder, metric_value, rss_peak_bytes
from vigil.procs import ManagedProcess, free_port

FILE_CANARY = "canary-file-secret-7f3a9c1e"
ENV_CANARY = "canary-env-secret-52be0d44"
SCRAPE_BUDGET = 4.0
SLACK = 3.0
MEMORY_BOUND = 300 * 1024 * 1024


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=evil.invalid", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def target(name: str, base_url: str, secret_file: Path) -> dict[str, Any]:
    return {
        "name": name, "base_url": base_url,
        "headers_from_file": {"X-API-Key": str(secret_file)},
        "headers_from_env": {"Authorization": "HOSTILE_PROBE_AUTH"},
        "endpoints": {"items": [{"name": "health", "path": "/health", "timeout": 2.0}]},
        "security": {"paths": ["/"], "request_timeout": 2.0},
        "journeys": {"request_timeout": 2.0, "items": [{
            "name": "login", "origin": "https://app.example.com",
            "steps": [{"name": "start", "path": "/login"}]}]},
    }


def start_exporter(start_process: Any, tmp_path: Path, config: dict[str, Any]) -> tuple[Any, str]:
    path = tmp_path / "exporter.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    proc = ManagedProcess(
        name="exporter", log_path=tmp_path / "exporter.log",
        argv=[sys.executable, "-c", "from vigil.exporter.service import main; main()",
              f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"],
        env={"HOSTILE_PROBE_AUTH": f"Bearer {ENV_CANARY}"},
        ready_url=f"http://127.0.0.1:{port}/-/healthy")
    return start_process(proc), f"http://127.0.0.1:{port}"


def scrape(url: str) -> tuple[str, float]:
    t0 = time.monotonic()
    resp = requests.get(f"{url}/metrics", timeout=SCRAPE_BUDGET + 30,
                        headers={"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_BUDGET)})
    assert resp.status_code == 200
    return resp.text, time.monotonic() - t0


def run_hostile(tmp_path: Path, start_process: Any, modes: list[str]) -> None:
    secret = tmp_path / "api-key"
    secret.write_text(FILE_CANARY + "\n")
    elsewhere = Recorder().start()  # "another host": reached as localhost, not 127.0.0.1
    servers: dict[str, HostileServer] = {}
    for mode in modes:
        if mode == "redirect":
            servers[mode] = HostileServer("redirect", location=f"http://localhost:{elsewhere.port}/stolen")
        elif mode == "bad_tls":
            servers[mode] = HostileServer("huge_headers", header_bytes=10, tls_context=self_signed(tmp_path))
        else:
            servers[mode] = HostileServer(mode, drip_interval=0.3)
    try:
        config = {"scrape_timeout": SCRAPE_BUDGET,
                  "targets": [target(mode, s.url, secret) for mode, s in servers.items()]}
        proc, url = start_exporter(start_process, tmp_path, config)
        for _ in range(3):
            text, elapsed = scrape(url)
            # bounded: the scrape answers within its budget (a hang would run to the 30 s timeout)
            assert elapsed <= SCRAPE_BUDGET + SLACK, elapsed
        for mode in modes:
            if mode == "endless":  # a 200 whose start was read: up or down are both honest
                continue
            # the endpoint is down, and nothing pretends otherwise
            assert metric_value(text, "vigil_endpoint_up", {"target": mode, "endpoint": "health"}) == 0.0, mode
        log = (tmp_path / "exporter.log").read_text(errors="replace")
        for canary in (FILE_CANARY, ENV_CANARY):
            assert canary not in text and canary not in log
        for method, path, headers in elsewhere.requests:
            assert FILE_CANARY not in str(headers) and ENV_CANARY not in str(headers), (method, path)
        # the hostile servers did receive the credentials (the probe really sent them)
        sent = b"".join(h for s in servers.values() for h in s.heads)
        if "redirect" in modes or "drip" in modes:
            assert FILE_CANARY.encode() in sent
        assert rss_peak_bytes(proc.pid) < MEMORY_BOUND
    finally:
        for s in servers.values():
            s.stop()
        elsewhere.stop()


def test_exporter_bounded_and_leak_free_against_slow_huge_redirecting_and_bad_tls_targets(
        tmp_path: Path, start_process: Any) -> None:
    run_hostile(tmp_path, start_process, ["drip", "huge_headers", "redirect", "bad_tls"])


def test_exporter_memory_bounded_against_an_endless_body(tmp_path: Path, start_process: Any) -> None:
    run_hostile(tmp_path, start_process, ["endless"])
