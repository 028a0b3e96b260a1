"""`vigil demo`: the whole loop on one machine, on embedded defaults.

Starts the demo target, every Vigil service whose code and default config exist, Prometheus
with the rules and Alertmanager with the routing, all on loopback with 1 s intervals and
configs generated in a temporary directory. Prints the URLs, drives a little traffic, and
shuts everything down cleanly on Ctrl-C (or after --duration seconds).
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from vigil.demo.client import DemoTarget, start_demo_target

from vigil.paths import DEPLOY_DIR, RULES_DIR
from vigil.procs import (
    BinaryNotFound,
    ManagedProcess,
    alertmanager_config,
    find_binary,
    free_port,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)
from vigil.service import ArgumentParser
from vigil.timescale import scale_alertmanager_config, scale_forecasts_config, scale_rule_file

__all__ = ["SERVICES", "ServiceSpec", "Stack", "main"]

# Default loopback addresses; deploy/*.yml files use these, and the stack rewrites them
# when a port is taken.
DEFAULT_PORTS = {"demo": 8080, "vigil-exporter": 9115, "vigil-forecaster": 9116,
                 "vigil-remediator": 9095, "prometheus": 9090, "alertmanager": 9093}


# Peak of the demo traffic's daily cycle, requests per second (the trough is a third of it).
TRAFFIC_PEAK_RPS = 6.0

# The remediator's correlation waits are wall-clock seconds while the demo's rules run 60x
# faster: a symptom waits 3 s (not 10) for its cause, and 10 s (not 30) after its outcome.
# Only the demo's generated copy gets them; deploy/remediator.yml keeps production defaults.
DEMO_REMEDIATOR = {"intelligence": {"symptom_hold": "3s", "reevaluate_after": "10s"}}

# The exporter probes the target while Prometheus waits: a 1 s scrape timeout leaves its
# checks half a second on a busy machine and reads as "exporter down". 3 s is still fast.
JOB_SETTINGS = {"vigil-exporter": {"scrape_interval": "3s", "scrape_timeout": "3s"}}


def _with_demo_waits(doc: dict[str, Any]) -> dict[str, Any]:
    intelligence = {**(doc.get("intelligence") or {}), **DEMO_REMEDIATOR["intelligence"]}
    return {**doc, "intelligence": intelligence}


def write_remediator_tokens(secrets_dir: Path) -> None:
    """Alertmanager's webhook token and the admin API's / console's: two secrets, so that
    what Alertmanager holds cannot act on incidents. Existing files are kept."""
    import secrets as _secrets

    for name in ("remediator-token", "remediator-admin-token"):
        token = secrets_dir / name
        if not token.exists():
            token.write_text(_secrets.token_urlsafe(24))
            token.chmod(0o600)


@dataclass(frozen=True)
class ServiceSpec:
    """A Vigil service the demo starts when its module and default config exist."""

    job: str
    module: str
    config: str  # file name under deploy/


SERVICES = (
    ServiceSpec("vigil-exporter", "vigil.exporter.service", "exporter.yml"),
    ServiceSpec("vigil-forecaster", "vigil.forecaster.service", "forecasts.yml"),
    ServiceSpec("vigil-remediator", "vigil.remediator.service", "remediator.yml"),
)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _rewrite(value: Any, replacements: dict[str, str]) -> Any:
    """Replace default addresses and paths in every string of a loaded YAML document."""
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_rewrite(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, replacements) for k, v in value.items()}
    return value


@dataclass
class Stack:
    """The running demo stack."""

    workdir: Path
    time_scale: float = 60.0
    am_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # False: every component on a free port, leaving the defaults to a developer's own demo
    prefer_default_ports: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    target: DemoTarget | None = None
    services: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    _stop_traffic: threading.Event = field(default_factory=threading.Event)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def replacements(self) -> dict[str, str]:
        out = {f"127.0.0.1:{DEFAULT_PORTS[n]}": f"127.0.0.1:{p}" for n, p in self.ports.items()}
        out["${VIGIL_SECRETS_DIR}"] = str(self.workdir / "secrets")
        out["${VIGIL_STATE_DIR}"] = str(self.workdir / "state")
        out["${VIGIL_DEMO_STATE_DIR}"] = str(self.workdir / "demo-target")
        out["${VIGIL_DEPLOY_DIR}"] = str(DEPLOY_DIR)
        return out

    def generated(self, name: str, transform: Any = None) -> Path:
        """Copy deploy/<name> into the workdir with addresses and paths rewritten."""
        data = yaml.safe_load((DEPLOY_DIR / name).read_text())
        if transform is not None:
            data = transform(data)
        out = self.workdir / "config" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(_rewrite(data, self.replacements()), sort_keys=False))
        return out

    def start(self, log: Any = print) -> None:
        for name, port in DEFAULT_PORTS.items():
            self.ports[name] = port if self.prefer_default_ports and _port_free(port) else free_port()
            if self.prefer_default_ports and self.ports[name] != port:
                log(f"  port {port} for {name} is taken; using {self.ports[name]}")
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "state").mkdir(exist_ok=True)

        log("starting the demo target")
        self.target = start_demo_target(self.workdir / "demo-target", port=self.ports["demo"])
        self.processes.append(self.target.process)
        self.target.process.wait_ready(30)
        for name in ("admin-token", "api-key"):
            shutil.copy(self.target.state_dir / name, secrets_dir / f"demo-{name}")
            (secrets_dir / f"demo-{name}").chmod(0o600)
        write_remediator_tokens(secrets_dir)

        scrape: dict[str, list[str]] = {"demo": [f"127.0.0.1:{self.ports['demo']}"]}
        for spec in SERVICES:
            if importlib.util.find_spec(spec.module) is None or not (DEPLOY_DIR / spec.config).exists():
                self.skipped.append(spec.job)
                continue
            log(f"starting {spec.job}")
            transform = None
            if spec.job == "vigil-forecaster":
                transform = lambda d: scale_forecasts_config(d, self.time_scale)
            elif spec.job == "vigil-remediator":
                transform = _with_demo_waits
            config = self.generated(spec.config, transform)
            port = self.ports[spec.job]
            proc = ManagedProcess(
                name=spec.job,
                argv=[sys.executable, "-c", f"from {spec.module} import main; main()",
                      f"--config.file={config}",
                      f"--web.listen-address=127.0.0.1:{port}"],
                log_path=self.workdir / "logs" / f"{spec.job}.log",
                ready_url=f"http://127.0.0.1:{port}/-/healthy",
                env={"DEMO_API_KEY": self.target.api_key},
            )
            self.processes.append(proc.start())
            proc.wait_ready(60)
            self.services.append(spec.job)
            scrape[spec.job] = [f"127.0.0.1:{port}"]

        log("starting alertmanager")
        am_config: dict[str, Any] | Path
        if (DEPLOY_DIR / "alertmanager.yml").exists() and "vigil-remediator" in self.services:
            def transform(doc: dict[str, Any]) -> dict[str, Any]:
                doc = scale_alertmanager_config(doc, self.time_scale)
                return self.am_transform(doc) if self.am_transform else doc

            am_config = self.generated("alertmanager.yml", transform)
        else:
            am_config = alertmanager_config(None)
        am, _ = start_alertmanager(self.workdir / "alertmanager", am_config,
                                   port=self.ports["alertmanager"])
        self.processes.append(am)
        am.wait_ready(30)

        log("starting prometheus")
        # Rules are written for production windows; compress them to the demo's 1 s clock.
        rule_files = [scale_rule_file(f, self.workdir / "rules" / f.name, self.time_scale)
                      for f in sorted(RULES_DIR.glob("*.rules.yml"))]
        prom, _ = start_prometheus(
            self.workdir / "prometheus",
            prometheus_config(scrape, rule_files=rule_files,
                              alertmanagers=[f"127.0.0.1:{self.ports['alertmanager']}"],
                              job_settings=JOB_SETTINGS),
            port=self.ports["prometheus"])
        self.processes.append(prom)
        prom.wait_ready(30)
        self._wait_all_up(len(scrape))
        threading.Thread(target=self._traffic, daemon=True, name="demo-traffic").start()

    def _wait_all_up(self, jobs: int, timeout: float = 60) -> None:
        """Wait until Prometheus has scraped every job successfully once, so that no
        'service down' alert starts from the stack's own start-up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.query("up")
            if len(up) == jobs and all(r["value"][1] == "1" for r in up):
                return
            time.sleep(0.5)
        raise TimeoutError(f"not every job is up in Prometheus after {timeout:.0f}s: "
                           + ", ".join(f"{r['metric']['job']}={r['value'][1]}" for r in self.query("up")))

    def traffic_rate(self, at: float) -> float:
        """Requests per second the traffic thread sends at a time: a daily cycle (one
        compressed day lasts 86400 / time_scale seconds) between a third and the full peak."""
        day = 86400.0 / self.time_scale
        return TRAFFIC_PEAK_RPS * (2.0 + math.sin(2.0 * math.pi * (at % day) / day)) / 3.0

    def _traffic(self) -> None:
        """A browser-like client with a daily load cycle, sending an Origin like real users."""
        assert self.target is not None
        origin = {"Origin": "https://app.example.com"}
        calls = [("GET", "/api/v1/items", None), ("GET", "/api/v1/items/1", None),
                 ("PATCH", "/api/v1/items/1", {"stock": 10}), ("GET", "/api/v1/users", None),
                 ("GET", "/api/v1/quote", None), ("GET", "/api/v1/orders/summary", None)]
        i = 0
        while not self._stop_traffic.wait(1.0 / self.traffic_rate(time.time())):
            method, path, body = calls[i % len(calls)]
            i += 1
            try:
                self.target.api(method, path, json=body, headers=origin, timeout=5)
            except requests.RequestException:
                pass  # the target may be faulted or restarting; users retry too

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=5)
        resp.raise_for_status()
        return list(resp.json()["data"]["result"])

    def stop(self) -> None:
        self._stop_traffic.set()
        for proc in reversed(self.processes):
            proc.stop()


def stop_on_sigterm() -> None:
    """Make SIGTERM (systemd, docker, timeout) unwind like Ctrl-C, so that the children,
    which run in their own sessions, are stopped rather than orphaned."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def watch(processes: Sequence[ManagedProcess], duration: float | None) -> int:
    """Wait for `duration` seconds (forever when None); 1 as soon as one process exits, with
    its log tail printed."""
    deadline = time.monotonic() + duration if duration else None
    while deadline is None or time.monotonic() < deadline:
        time.sleep(1)
        for proc in processes:
            if not proc.alive():
                print(f"vigil demo: error: {proc.name} exited; its log:\n{proc.log_tail(20)}",
                      file=sys.stderr)
                return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole loop until Ctrl-C."""
    parser = ArgumentParser(prog="vigil demo", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop by itself after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--workdir", default=None,
                        help="where to write configs, data and logs (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir on exit")
    parser.add_argument("--time-scale", type=float, default=60.0, metavar="F",
                        help="divide every rule duration (for, ranges, predict_linear look-ahead) "
                             "by F, so a minute of production time passes in a second "
                             "(default: 60; 1 runs the rules as written)")
    parser.add_argument("--scenario", metavar="NAME", default=None,
                        help="run one fault scenario live, print its timeline, then stop "
                             "(names: see docs/scenarios.md)")
    parser.add_argument("--stack", choices=("demo", "reference"), default="demo",
                        help="demo: the demo target; reference: Kinto and Datasette under "
                             "supervisord with the Prometheus exporters (docs/reference-stack.md)")
    args = parser.parse_args(argv)
    if args.stack == "reference":
        if args.scenario is not None:
            parser.error("--scenario runs on the demo stack; for the reference stack use "
                         "`vigil scenarios --stack reference NAME`")
        from vigil.demo.reference import run_demo

        return run_demo(args)
    if args.scenario is not None:
        from vigil.demo.scenarios import SCENARIOS

        if args.scenario not in {s.name for s in SCENARIOS}:
            parser.error(f"unknown scenario {args.scenario!r}; known: "
                         + ", ".join(s.name for s in SCENARIOS))
    for binary in ("prometheus", "prometheus-alertmanager"):
        try:
            find_binary(binary)
        except BinaryNotFound as exc:
            print(f"vigil demo: error: {exc}", file=sys.stderr)
            return 1
    stop_on_sigterm()
    # absolute: the generated configs name their secret files relative to their own folder
    workdir = (Path(args.workdir).resolve() if args.workdir
               else Path(tempfile.mkdtemp(prefix="vigil-demo-")))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.time_scale <= 0:
        parser.error(f"--time-scale must be positive, got {args.time_scale:g}")
    human = None
    transform = None
    if args.scenario is not None:
        from vigil.demo.scenarios import _human_receivers

        from vigil.sink import WebhookReceiver

        human = WebhookReceiver().start()
        transform = lambda doc: _human_receivers(doc, human.url)
    stack = Stack(workdir, time_scale=args.time_scale, am_transform=transform)
    print(f"vigil demo: working directory {workdir}")
    try:
        stack.start(log=lambda m: print(f"  {m}", flush=True))
        print("\nVigil demo is up:")
        rows = [("demo target", stack.url("demo"))]
        rows += [(job, stack.url(job)) for job in stack.services]
        rows += [("prometheus", stack.url("prometheus")), ("alertmanager", stack.url("alertmanager"))]
        for name, url in rows:
            print(f"  {name:<18} {url}")
        if stack.skipped:
            print(f"  (not started, not built yet: {', '.join(stack.skipped)})")
        print(f"  admin token file   {workdir / 'secrets' / 'demo-admin-token'}")
        if "vigil-remediator" in stack.services:
            print(f"  incident console   {stack.url('vigil-remediator')}/console  (sign in with "
                  f"{workdir / 'secrets' / 'remediator-admin-token'})")
        print("\nTry a fault:  curl -H \"Authorization: Bearer $(cat "
              f"{workdir / 'secrets' / 'demo-admin-token'})\" -d '{{\"cors_drift\": true}}' "
              f"{stack.url('demo')}/admin/faults")
        if args.scenario is not None:
            from vigil.demo.scenarios import SCENARIOS, run_scenario
            from vigil.demo.scorecard import Scorecard

            scenario = next(s for s in SCENARIOS if s.name == args.scenario)
            print(f"\nscenario {scenario.name}: {scenario.summary}", flush=True)
            result = run_scenario(stack, scenario, human, duration=args.duration,
                                  log=lambda m: print(m, flush=True))
            Scorecard([result]).print()
            return 0
        print("Press Ctrl-C to stop.\n", flush=True)
        # start() waited for one good scrape of every job, so this live query has them all
        up = sorted(stack.query("up"), key=lambda r: r["metric"]["job"])
        print("Prometheus `up`: " + ", ".join(f"{r['metric']['job']}={r['value'][1]}" for r in up),
              flush=True)
        if watch(stack.processes, args.duration) != 0:
            return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except (TimeoutError, RuntimeError) as exc:
        print(f"vigil demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        if human is not None:
            human.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("vigil demo: stopped cleanly")
    return 0
