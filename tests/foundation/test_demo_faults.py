"""Each injected fault moves the metric it should, and each recovery control undoes it."""

from __future__ import annotations

import requests
from vigil.demo.client import DemoTarget

from tests.harness import wait_for

ORIGIN = "https://app.example.com"


def test_error_rate_fault(demo_target: DemoTarget) -> None:
    demo_target.inject(error_rate=1.0)
    assert demo_target.api("GET", "/api/v1/users").status_code == 500
    assert demo_target.metric("http_requests_total", {"route": "/api/v1/users", "status": "500"}) == 1
    demo_target.clear()
    assert demo_target.api("GET", "/api/v1/users").status_code == 200


def test_latency_fault(demo_target: DemoTarget) -> None:
    demo_target.inject(latency_seconds=0.3)
    demo_target.api("GET", "/api/v1/users")
    total = demo_target.metric("http_request_duration_seconds_sum", {"route": "/api/v1/users"})
    assert total is not None and total >= 0.3


def test_memory_growth_fault_and_restart(demo_target: DemoTarget) -> None:
    rss_before = demo_target.metric("process_resident_memory_bytes")
    demo_target.inject(memory_growth_bytes_per_second=40 * 1024 * 1024)
    leaked = wait_for(lambda: (demo_target.metric("demo_memory_leak_bytes") or 0) >= 40 * 2**20,
                      timeout=20, what="leak to grow")
    assert leaked
    rss = demo_target.metric("process_resident_memory_bytes")
    assert rss is not None and rss_before is not None and rss > rss_before + 30 * 2**20
    assert demo_target.metric("demo_fault_active", {"fault": "memory_growth"}) == 1
    demo_target.admin("POST", "/admin/restart")
    assert demo_target.metric("demo_memory_leak_bytes") == 0
    rss_after = demo_target.metric("process_resident_memory_bytes")
    assert rss_after is not None and rss_after < rss - 30 * 2**20  # the memory really went back
    assert demo_target.metric("demo_restarts_total") == 1
    assert demo_target.metric("demo_fault_active", {"fault": "memory_growth"}) == 0


def test_pool_exhaustion_fault_and_restart(demo_target: DemoTarget) -> None:
    demo_target.inject(pool_exhaustion=True)
    assert demo_target.metric("demo_db_pool_connections_in_use") == demo_target.metric("demo_db_pool_size")
    assert demo_target.api("GET", "/api/v1/items").status_code == 503
    demo_target.admin("POST", "/admin/restart")
    assert demo_target.metric("demo_db_pool_connections_in_use") == 0
    assert demo_target.api("GET", "/api/v1/items").status_code == 200


def test_pool_leak_fault_fills_the_pool_gradually_and_restart_releases(demo_target: DemoTarget) -> None:
    size = demo_target.metric("demo_db_pool_size")
    assert size == 5
    demo_target.inject(pool_leak_connections_per_second=4.0)  # one every 0.25 s
    wait_for(lambda: (demo_target.metric("demo_db_pool_connections_in_use") or 0) >= 2, timeout=10,
             what="connections to leak")
    assert demo_target.metric("demo_fault_active", {"fault": "pool_leak"}) == 1
    wait_for(lambda: demo_target.metric("demo_db_pool_connections_in_use") == size, timeout=10,
             what="the leak to fill the pool")
    assert demo_target.api("GET", "/api/v1/items").status_code == 503
    demo_target.admin("POST", "/admin/restart")
    assert demo_target.metric("demo_db_pool_connections_in_use") == 0
    assert demo_target.metric("demo_fault_active", {"fault": "pool_leak"}) == 0
    assert demo_target.api("GET", "/api/v1/items").status_code == 200


def test_disk_growth_fault_and_cleanup(demo_target: DemoTarget) -> None:
    demo_target.inject(disk_growth_bytes_per_second=2 * 1024 * 1024)
    wait_for(lambda: (demo_target.metric("demo_disk_usage_bytes") or 0) >= 2 * 2**20, timeout=20,
             what="disk usage to grow")
    freed = demo_target.admin("POST", "/admin/disk/cleanup")["freed_bytes"]
    assert freed >= 2 * 2**20
    assert demo_target.metric("demo_disk_usage_bytes") == 0


def test_downstream_errors_and_circuit_breaker(demo_target: DemoTarget) -> None:
    demo_target.inject(downstream_errors=True)
    assert demo_target.api("GET", "/api/v1/quote").status_code == 502
    assert demo_target.metric("demo_downstream_requests_total", {"result": "error"}) == 1
    demo_target.admin("POST", "/admin/circuit-breaker", {"state": "open"})
    resp = demo_target.api("GET", "/api/v1/quote")
    assert resp.status_code == 200 and resp.json()["degraded"] is True
    assert demo_target.metric("demo_circuit_breaker_open") == 1
    assert demo_target.metric("demo_downstream_requests_total", {"result": "short_circuited"}) == 1


def _preflight(target: DemoTarget, method: str) -> requests.Response:
    return requests.options(f"{target.url}/api/v1/items/1", timeout=5, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": method})


def test_cors_drift_drops_patch_and_restore(demo_target: DemoTarget) -> None:
    assert "PATCH" in _preflight(demo_target, "PATCH").headers["Access-Control-Allow-Methods"]
    demo_target.inject(cors_drift=True)
    allowed = _preflight(demo_target, "PATCH").headers["Access-Control-Allow-Methods"]
    assert "PATCH" not in allowed and "GET" in allowed
    assert demo_target.metric("demo_config_drift") == 1
    assert "PATCH" not in (demo_target.state_dir / "config.yaml").read_text()
    demo_target.admin("POST", "/admin/config/restore")
    assert "PATCH" in _preflight(demo_target, "PATCH").headers["Access-Control-Allow-Methods"]
    assert demo_target.metric("demo_config_drift") == 0
    assert demo_target.metric("demo_config_reloads_total") == 1


def test_config_patch_drift(demo_target: DemoTarget) -> None:
    demo_target.inject(config_patch={"cors": {"reflect_any_origin": True}})
    resp = requests.options(f"{demo_target.url}/api/v1/items", timeout=5, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://evil.example"
    assert demo_target.metric("demo_fault_active", {"fault": "config_drift"}) == 1


def test_admin_requires_token(demo_target: DemoTarget) -> None:
    resp = requests.post(f"{demo_target.url}/admin/faults", json={"error_rate": 1.0}, timeout=5)
    assert resp.status_code == 401
    resp = requests.post(f"{demo_target.url}/admin/faults", json={"error_rate": 1.0}, timeout=5,
                         headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401
    assert demo_target.admin("GET", "/admin/faults")["error_rate"] == 0


def test_bad_fault_request_is_400(demo_target: DemoTarget) -> None:
    resp = requests.post(f"{demo_target.url}/admin/faults", json={"error_rate": 7}, timeout=5,
                         headers={"Authorization": f"Bearer {demo_target.admin_token}"})
    assert resp.status_code == 400
    assert "error_rate" in resp.json()["error"]
    resp = requests.post(f"{demo_target.url}/admin/faults", json={"bogus": 1}, timeout=5,
                         headers={"Authorization": f"Bearer {demo_target.admin_token}"})
    assert resp.status_code == 400 and "bogus" in resp.json()["error"]


def test_api_key_required(demo_target: DemoTarget) -> None:
    assert requests.get(f"{demo_target.url}/api/v1/items", timeout=5).status_code == 401
    assert demo_target.api("GET", "/api/v1/items").status_code == 200


def test_circuit_breaker_half_opens_and_closes_itself(demo_target: DemoTarget) -> None:
    import time

    demo_target.inject(downstream_errors=True)
    demo_target.admin("POST", "/admin/circuit-breaker", {"state": "open", "retry_after_seconds": 1})
    assert demo_target.api("GET", "/api/v1/quote").json()["degraded"] is True
    time.sleep(1.2)
    assert demo_target.api("GET", "/api/v1/quote").status_code == 502  # the trial fails: reopened
    assert demo_target.metric("demo_circuit_breaker_open") == 1
    assert demo_target.api("GET", "/api/v1/quote").json()["degraded"] is True
    demo_target.inject(downstream_errors=False)
    time.sleep(1.2)
    resp = demo_target.api("GET", "/api/v1/quote")  # the trial succeeds: closed
    assert resp.status_code == 200 and resp.json()["degraded"] is False
    assert demo_target.metric("demo_circuit_breaker_open") == 0
    bad = requests.post(f"{demo_target.url}/admin/circuit-breaker", timeout=5,
                        json={"state": "open", "retry_after_seconds": -1},
                        headers={"Authorization": f"Bearer {demo_target.admin_token}"})
    assert bad.status_code == 400
