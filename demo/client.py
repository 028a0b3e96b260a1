"""Start the demo target as a process and drive its admin API (for tests, demo and scenarios)."""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from vigil.procs import ManagedProcess, free_port

__all__ = ["DemoTarget", "start_demo_target"]


@dataclass
class DemoTarget:
    """A running demo target: where it is, its credentials and its process."""

    url: str
    admin_token: str
    api_key: str
    state_dir: Path
    process: ManagedProcess

    @property
    def host_port(self) -> str:
        return self.url.removeprefix("http://")

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin-token"

    def admin(self, method: str, path: str, json: Any = None, timeout: float = 10) -> Any:
        """Call an admin endpoint; raise for a non-2xx answer."""
        resp = requests.request(method, f"{self.url}{path}", json=json, timeout=timeout,
                                headers={"Authorization": f"Bearer {self.admin_token}"})
        resp.raise_for_status()
        return resp.json()

    def inject(self, **faults: Any) -> dict[str, Any]:
        """Set faults, e.g. inject(error_rate=0.5) or inject(cors_drift=True)."""
        return dict(self.admin("POST", "/admin/faults", faults))

    def clear(self) -> dict[str, Any]:
        return dict(self.admin("DELETE", "/admin/faults"))

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        """Call the public API with the API key."""
        headers = {"X-API-Key": self.api_key, **kw.pop("headers", {})}
        return requests.request(method, f"{self.url}{path}", headers=headers,
                                timeout=kw.pop("timeout", 10), **kw)

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Read one sample of the target's /metrics (sums matching samples)."""
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(f"{self.url}/metrics", timeout=10).text
        total, found = 0.0, False
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in (labels or {}).items()):
                    total += sample.value
                    found = True
        return total if found else None


def start_demo_target(state_dir: Path, *, port: int | None = None,
                      config: dict[str, Any] | None = None, database_url: str | None = None,
                      admin_token: str | None = None, api_key: str | None = None,
                      extra_env: dict[str, str] | None = None) -> DemoTarget:
    """Start `vigil demo-target` on a free loopback port (not yet waited for: call
    `target.process.wait_ready()`). Tokens are random unless given and written to files
    in the state dir (mode 0600) for the services that need them."""
    state_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    admin_token = admin_token or secrets.token_urlsafe(24)
    api_key = api_key or secrets.token_urlsafe(24)
    for name, value in (("admin-token", admin_token), ("api-key", api_key)):
        path = state_dir / name
        path.write_text(value)
        path.chmod(0o600)
    argv = [sys.executable, "-m", "vigil.demo.target", f"--web.listen-address=127.0.0.1:{port}",
            f"--state-dir={state_dir}"]
    if config is not None:
        config_path = state_dir / "target-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        argv.append(f"--config.file={config_path}")
    if database_url:
        argv.append(f"--database-url={database_url}")
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        name="demo-target", argv=argv, log_path=state_dir / "demo-target.log",
        ready_url=f"{url}/-/ready",
        env={"DEMO_ADMIN_TOKEN": admin_token, "DEMO_API_KEY": api_key, **(extra_env or {})},
    )
    proc.start()
    return DemoTarget(url=url, admin_token=admin_token, api_key=api_key, state_dir=state_dir,
                      process=proc)
