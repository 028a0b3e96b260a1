"""Start, wait for and stop the real binaries Vigil drives (Prometheus, Alertmanager, its services).

Shared by `vigil demo`, the scenario runner and the test harness, so that all three
start Prometheus and Alertmanager the same way.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

__all__ = [
    "BinaryNotFound",
    "ManagedProcess",
    "alertmanager_config",
    "find_binary",
    "free_port",
    "prometheus_config",
    "start_alertmanager",
    "start_prometheus",
]

INSTALL_HINT = {
    "prometheus": "apt-get install prometheus",
    "promtool": "apt-get install prometheus",
    "prometheus-alertmanager": "apt-get install prometheus-alertmanager",
    "amtool": "apt-get install prometheus-alertmanager",
    "prometheus-node-exporter": "apt-get install prometheus-node-exporter",
    "prometheus-postgres-exporter": "apt-get install prometheus-postgres-exporter",
    "prometheus-blackbox-exporter": "apt-get install prometheus-blackbox-exporter",
    "supervisord": "apt-get install supervisor",
    "supervisorctl": "apt-get install supervisor",
}


class BinaryNotFound(RuntimeError):
    """A required executable is not on PATH."""


def find_binary(name: str) -> str:
    """Return the path of an executable, or raise BinaryNotFound saying what to install."""
    # Debian names the Alertmanager binary prometheus-alertmanager; upstream calls it alertmanager.
    candidates = [name] + (["alertmanager"] if name == "prometheus-alertmanager" else [])
    for candidate in candidates:
        path = shutil.which(candidate)
        if path:
            return path
    hint = INSTALL_HINT.get(name, f"install {name}")
    raise BinaryNotFound(f"{name} not found on PATH: {hint} (or run `make install`)")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ManagedProcess:
    """A child process with its log file, a readiness URL and a clean stop."""

    name: str
    argv: list[str]
    log_path: Path
    ready_url: str | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> ManagedProcess:
        """Poll ready_url until it answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode if self.proc else '?'}"
                                   f" before it was ready:\n{self.log_tail()}")
            if self.ready_url is None:
                return self
            try:
                resp = requests.get(self.ready_url, timeout=1)
                if resp.status_code == 200:
                    return self
                last = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                last = exc.__class__.__name__
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready at {self.ready_url} after {timeout}s ({last}):\n"
                           f"{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def prometheus_config(
    scrape_targets: Mapping[str, Sequence[str]],
    *,
    rule_files: Sequence[str | Path] = (),
    alertmanagers: Sequence[str] = (),
    interval: str = "1s",
    extra_scrape_configs: Sequence[dict[str, Any]] = (),
    job_settings: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Build a Prometheus config: one job per entry of scrape_targets (job -> host:port list);
    job_settings adds per-job keys such as scrape_interval and scrape_timeout."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval,
                   "scrape_timeout": interval},
        "scrape_configs": [
            {"job_name": job, **(job_settings or {}).get(job, {}),
             "static_configs": [{"targets": list(targets)}]}
            for job, targets in scrape_targets.items()
        ] + list(extra_scrape_configs),
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanagers:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]}
    return config


def alertmanager_config(webhook_url: str | None, *, group_wait: str = "0s",
                        group_interval: str = "1s", repeat_interval: str = "1h",
                        send_resolved: bool = True) -> dict[str, Any]:
    """A minimal Alertmanager config that sends every alert to one webhook, fast."""
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": send_resolved}]
    return {
        "route": {"receiver": "default", "group_by": ["alertname"], "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": repeat_interval},
        "receivers": [receiver],
    }


def _config_file(workdir: Path, config: dict[str, Any] | Path, name: str) -> Path:
    """The config as a file: a Path is used as is, a dict is written into workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        return config
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_prometheus(workdir: Path, config: dict[str, Any] | Path, *, port: int | None = None,
                     name: str = "prometheus", extra_args: Sequence[str] = ()) -> tuple[ManagedProcess, str]:
    """Start Prometheus on a free loopback port; return the process and its base URL."""
    config_path = _config_file(workdir, config, "prometheus.yml")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        name=name,
        argv=[find_binary("prometheus"), f"--config.file={config_path}",
              f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
              "--web.enable-lifecycle", "--rules.alert.resend-delay=1s",
              "--rules.alert.for-grace-period=1s", "--log.level=warn", *extra_args],
        log_path=workdir / "prometheus.log",
        ready_url=f"{url}/-/ready",
    )
    return proc.start(), url


def start_alertmanager(workdir: Path, config: dict[str, Any] | Path, *, port: int | None = None,
                       name: str = "alertmanager", cluster_listen: str = "",
                       peers: Sequence[str] = (), extra_args: Sequence[str] = ()) -> tuple[ManagedProcess, str]:
    """Start Alertmanager on a free loopback port (clustering off unless cluster_listen is set)."""
    config_path = _config_file(workdir, config, "alertmanager.yml")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [find_binary("prometheus-alertmanager"), f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            f"--cluster.listen-address={cluster_listen}", "--log.level=warn"]
    argv += [f"--cluster.peer={p}" for p in peers]
    proc = ManagedProcess(name=name, argv=argv + list(extra_args),
                          log_path=workdir / "alertmanager.log", ready_url=f"{url}/-/ready")
    return proc.start(), url
