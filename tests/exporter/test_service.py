"""The exporter service: checks on scrape, the scrape timeout header, min_interval caching,
failure isolation, a clean `promtool check metrics`, and a real Prometheus scraping it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient, AiohttpServer
from vigil.demo.client import DemoTarget
from vigil.exporter.config import parse_config
from vigil.exporter.service import RUNNER, ExporterSettings, create_app

from tests.exporter.helpers import demo_config_dict
from tests.harness import prom_query, require_binary, wait_for
from vigil.procs import ManagedProcess, free_port, prometheus_config


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def start_exporter(start_process, tmp_path: Path, data: dict[str, Any]) -> str:  # type: ignore[no-untyped-def]
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump(data))
    port = free_port()
    start_process(
        ManagedProcess(
            name="vigil-exporter",
            argv=[
                sys.executable,
                "-c",
                "from vigil.exporter.service import main; main()",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log_path=tmp_path / "exporter.log",
            ready_url=f"http://127.0.0.1:{port}/-/ready",
        )
    )
    return f"127.0.0.1:{port}"


def test_exposition_passes_promtool_and_prometheus_scrapes_it(
    demo_target: DemoTarget, tmp_path: Path, start_process, prometheus_factory
) -> None:  # type: ignore[no-untyped-def]
    promtool = require_binary("promtool")
    data = demo_config_dict(demo_target, tmp_path)
    # a second target that is down: its checks fail, /metrics still answers
    data["targets"].append(
        {
            "name": "down",
            "base_url": f"http://127.0.0.1:{free_port()}",
            "cors": {"origins": ["https://app.example.com"], "request_timeout": 0.5},
        }
    )
    demo_target.inject(cors_drift=True)
    exporter = start_exporter(start_process, tmp_path, data)
    resp = requests.get(
        f"http://{exporter}/metrics",
        timeout=30,
        headers={"X-Prometheus-Scrape-Timeout-Seconds": "8"},
    )
    assert resp.status_code == 200
    text = resp.text
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, check=False, capture_output=True, text=True
    )
    assert lint.returncode == 0 and lint.stdout.strip() == "" and lint.stderr.strip() == "", (
        lint.stdout + lint.stderr
    )

    assert (
        sample(
            text,
            "vigil_cors_preflight_allowed",
            target="demo",
            origin="https://app.example.com",
            method="PATCH",
        )
        == 0.0
    )
    assert (
        sample(
            text,
            "vigil_cors_preflight_allowed",
            target="demo",
            origin="https://app.example.com",
            method="PUT",
        )
        == 1.0
    )
    for check in ("cors", "env", "security", "endpoints", "journeys"):
        assert sample(text, "vigil_check_success", target="demo", check=check) == 1.0, check
    assert sample(text, "vigil_check_success", target="down", check="cors") == 0.0
    assert sample(text, "vigil_findings", target="demo", check="cors", severity="critical") == 2.0
    assert (
        sample(text, "vigil_findings", target="demo", check="journeys", severity="critical") == 1.0
    )
    assert sample(text, "vigil_journey_success", target="demo", journey="item_lifecycle") == 0.0
    assert (
        sample(
            text, "vigil_journey_step_ok", target="demo", journey="item_lifecycle", step="rename"
        )
        == 0.0
    )
    assert sample(text, "vigil_endpoint_up", target="demo", endpoint="items") == 1.0
    # The demo serves plain http with every header: the Observatory's -20 for no https
    # redirect and -20 for no HSTS leave 60 (C+), under 90, so its bonuses do not count.
    observatory = {"target": "demo", "path": "/api/v1/items", "grade": "C+"}
    assert sample(text, "vigil_security_observatory_score", **observatory) == 60.0
    assert sample(text, "vigil_env_valid", target="demo", variable="DEMO_API_KEY") == 1.0
    score = sample(text, "vigil_config_score", target="demo")
    assert score is not None and 0 < score < 100
    assert sample(text, "vigil_config_score", target="down") == 0.0
    assert sample(text, "vigil_build_info", version="0.1.0") == 1.0

    _, prom = prometheus_factory(prometheus_config({"vigil-exporter": [exporter]}, interval="2s"))
    got = wait_for(
        lambda: prom_query(prom, 'vigil_cors_preflight_allowed{method="PATCH"} == 0'),
        timeout=40,
        what="PATCH preflight series scraped by Prometheus",
    )
    assert {r["metric"]["origin"] for r in got} == {
        "https://app.example.com",
        "https://admin.example.com",
    }
    up = prom_query(prom, 'up{job="vigil-exporter"}')
    assert up and up[0]["value"][1] == "1"


def _small_config(base_url: str, **env: Any) -> Any:
    return parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": base_url,
                    "endpoints": {"min_interval": 3600, "items": [{"name": "root", "path": "/"}]},
                    "cors": {"origins": ["https://a.example.com"], "request_timeout": 0.5},
                }
            ]
        }
    )


async def test_min_interval_cache_and_help_text(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    hits = 0

    async def root(request: web.Request) -> web.Response:
        nonlocal hits
        if request.method == "GET" and "Origin" not in request.headers:
            hits += 1
        return web.Response(text="ok")

    target = web.Application()
    target.router.add_route("*", "/", root)
    server = await aiohttp_server(target)
    app = create_app(ExporterSettings(_small_config(str(server.make_url("")).rstrip("/"))))
    client = await aiohttp_client(app)
    first = await (await client.get("/metrics")).text()
    second = await (await client.get("/metrics")).text()
    assert hits == 1  # the endpoint check ran once; the second scrape was served from cache
    fams = families(second)
    assert "Served from cache" in fams["vigil_endpoint_up"].documentation
    assert "t/endpoints" in fams["vigil_check_success"].documentation
    assert "Served from cache" not in families(first)["vigil_endpoint_up"].documentation
    assert sample(second, "vigil_check_cached", target="t", check="endpoints") == 1.0
    assert sample(second, "vigil_check_cached", target="t", check="cors") == 0.0
    assert sample(second, "vigil_exporter_check_runs_total", target="t", check="endpoints") == 1.0
    assert sample(second, "vigil_exporter_check_runs_total", target="t", check="cors") == 2.0


async def test_scrape_timeout_header_bounds_the_checks(
    aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient
) -> None:
    async def slow(_: web.Request) -> web.Response:
        import asyncio

        await asyncio.sleep(30)
        return web.Response(text="late")

    target = web.Application()
    target.router.add_route("*", "/", slow)
    server = await aiohttp_server(target)
    config = parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": str(server.make_url("")).rstrip("/"),
                    "endpoints": {"items": [{"name": "root", "path": "/", "timeout": 60}]},
                }
            ]
        }
    )
    client = await aiohttp_client(create_app(ExporterSettings(config, timeout_offset=0.5)))
    resp = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
    text = await resp.text()
    assert resp.status == 200
    runner = client.app[RUNNER] if client.app else None
    assert runner is not None
    # The limit the request got (or the check was cut at) comes from the header (1.5 s minus
    # the 0.5 s offset), not from the endpoint's own 60 s timeout.
    [result] = runner.results()
    messages = " ".join(f.message for f in result.findings)
    match = re.search(r"(?:within|after) (\d+\.\d+)s", messages)
    assert match and float(match.group(1)) <= 1.0, messages
    if result.success:
        assert sample(text, "vigil_endpoint_up", target="t", endpoint="root") == 0.0


async def test_a_crashing_check_never_breaks_metrics(aiohttp_client: AiohttpClient) -> None:
    config = parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": "http://127.0.0.1:9",
                    "env": {
                        "source": "dotenv",
                        "file": "/nonexistent/.env",
                        "variables": [{"name": "A"}],
                    },
                }
            ]
        }
    )
    app = create_app(ExporterSettings(config))

    class Boom:
        name, target, min_interval = "boom", "t", 0.0

        async def __call__(self, timeout: float) -> Any:
            raise ZeroDivisionError("secret-ish detail")

    app[RUNNER].slots.append(type(app[RUNNER].slots[0])(Boom()))  # type: ignore[arg-type]
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert sample(text, "vigil_check_success", target="t", check="env") == 0.0
    assert sample(text, "vigil_check_success", target="t", check="boom") == 0.0
    assert "secret-ish" not in text
    assert sample(text, "vigil_exporter_check_errors_total", target="t", check="boom") == 1.0


async def test_a_malformed_result_costs_its_families_not_the_scrape(
    aiohttp_client: AiohttpClient,
) -> None:
    config = parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": "http://127.0.0.1:9",
                    "cors": {"origins": ["https://a.example.com"]},
                }
            ]
        }
    )
    app = create_app(ExporterSettings(config))
    from vigil.exporter.base import CheckResult

    bad = CheckResult("t", "weird", True)
    bad.findings.append("not a Finding")  # type: ignore[arg-type]
    app[RUNNER].slots[0].result = bad  # what a buggy plug-in check could leave behind
    app[RUNNER].slots[0].check.min_interval = 3600  # serve it from cache
    app[RUNNER].slots[0].finished_at = time.monotonic()
    client = await aiohttp_client(app)
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert sample(text, "vigil_exporter_collect_errors_total") == 1.0
    assert sample(text, "vigil_build_info", version="0.1.0") == 1.0


async def test_failures_are_logged_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    from vigil.exporter.runner import CheckRunner

    class Flaky:
        name, target, min_interval = "flaky", "t", 0.0
        fail = True

        async def __call__(self, timeout: float) -> Any:
            from vigil.exporter.base import CheckError, CheckResult

            if self.fail:
                raise CheckError("target unreachable")
            return CheckResult("t", "flaky", True)

    check = Flaky()
    runner = CheckRunner([check])  # type: ignore[list-item]
    with caplog.at_level("INFO", logger="vigil.exporter"):
        for _ in range(3):
            await runner.refresh(1)
        check.fail = False
        await runner.refresh(1)
    messages = [r.getMessage() for r in caplog.records if r.name == "vigil.exporter"]
    assert messages == ["check t/flaky failed: target unreachable", "check t/flaky recovered"]
