"""The reference stack: Vigil watching real third-party software it did not write.

Kinto (records and permissions in PostgreSQL) and Datasette (SQLite), both from PyPI, run
under supervisord. postgres_exporter watches Kinto's database, node_exporter the filesystem of
a spool directory (a 64 MiB tmpfs when running as root), blackbox_exporter probes both apps.
Prometheus evaluates the rules generated from deploy/reference/services.yml (rules/) and
deploy/reference/reference.rules.yml, Alertmanager routes to
vigil-remediator, which runs deploy/reference/procedures.yml against the real processes,
database and files. `vigil demo --stack reference` runs it; the reference scenarios
(demo/reference_scenarios.py) fault it. See docs/reference-stack.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import requests
import yaml
from psycopg2 import sql

from vigil.paths import DEPLOY_DIR
from vigil.procs import (
    ManagedProcess,
    find_binary,
    free_port,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
)
from vigil.timescale import scale_alertmanager_config, scale_rule_file

__all__ = ["PROGRAMS", "REFERENCE_DIR", "RULE_FILES", "ReferenceStack", "admin_database_url", "run_demo"]

REFERENCE_DIR = DEPLOY_DIR / "reference"
PROGRAMS = ("kinto", "datasette")
# the per-database connection limit Kinto's database is created with (CONNECTION LIMIT)
KINTO_CONNECTION_LIMIT = 20
SPOOL_SIZE_MIB = 64
EXPORTERS = {
    "postgres": "prometheus-postgres-exporter",
    "node": "prometheus-node-exporter",
    "blackbox": "prometheus-blackbox-exporter",
}
# Where each app is probed: (program, probe kind, blackbox module, path)
PROBES = (
    ("kinto", "health", "http_2xx", "/v1/__heartbeat__"),
    ("kinto", "config", "kinto_config", "/v1/"),
    ("datasette", "health", "http_2xx", "/-/versions.json"),
)
# What the stack's Prometheus loads: the files `vigil rules generate` renders from
# deploy/reference/services.yml into rules/ (Vigil's own health and anomaly files are not: the
# stack runs none of the components they watch), and the hand-written reference.rules.yml.
RULE_FILES = ("rules/signals.rules.yml", "rules/target.rules.yml", "rules/prediction.rules.yml",
              "reference.rules.yml")
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_database_url() -> str:
    """A PostgreSQL URL allowed to create a database and a role: $VIGIL_REFERENCE_DATABASE_URL,
    else the test suite's $VIGIL_TEST_DATABASE_URL, else the local `postgres` superuser."""
    return (os.environ.get("VIGIL_REFERENCE_DATABASE_URL")
            or os.environ.get("VIGIL_TEST_DATABASE_URL") or DEFAULT_ADMIN_URL)


def _with_credentials(url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(("postgresql", netloc, f"/{database}", "", ""))


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return text


@dataclass
class ReferenceStack:
    """The running reference stack (same surface as demo.stack.Stack for the scenario runner:
    workdir, url(), query(), start(), stop())."""

    workdir: Path
    time_scale: float = 60.0
    am_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    admin_url: str = field(default_factory=admin_database_url)
    traffic: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    name: str = field(default_factory=lambda: f"refstack_{secrets.token_hex(4)}")
    db_password: str = field(default_factory=lambda: secrets.token_hex(16))
    spool_mounted: bool = False
    target: None = None  # no demo target here
    _stop_traffic: threading.Event = field(default_factory=threading.Event)
    _db_created: bool = False

    def __post_init__(self) -> None:
        # libpq and the exporter take plain postgresql:// URLs (SQLAlchemy's +driver suffix off)
        scheme, sep, rest = self.admin_url.partition("://")
        self.admin_url = scheme.split("+")[0] + sep + rest

    # --- where things are
    @property
    def dir(self) -> Path:
        return self.workdir / "reference"

    @property
    def spool_dir(self) -> Path:
        return self.workdir / "spool"

    @property
    def supervisor_conf(self) -> Path:
        return self.dir / "supervisord.conf"

    @property
    def kinto_ini(self) -> Path:
        return self.dir / "kinto" / "kinto.ini"

    @property
    def kinto_baseline(self) -> Path:
        return self.dir / "kinto" / "kinto.ini.baseline"

    @property
    def kinto_database_url(self) -> str:
        return _with_credentials(self.admin_url, self.name, self.db_password, self.name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=5)
        resp.raise_for_status()
        return list(resp.json()["data"]["result"])

    def supervisorctl(self, *args: str, check: bool = True) -> str:
        """Run supervisorctl against the stack's supervisord; return its output."""
        out = subprocess.run([find_binary("supervisorctl"), "-c", str(self.supervisor_conf), *args],
                             capture_output=True, text=True, timeout=30, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"supervisorctl {' '.join(args)} exited with {out.returncode}: "
                               f"{out.stdout.strip()} {out.stderr.strip()}")
        return out.stdout

    def program_pid(self, program: str) -> int:
        return int(self.supervisorctl("pid", program).strip())

    def kinto_auth(self) -> tuple[str, str]:
        return ("vigil-traffic", "reference-stack")

    # --- lifecycle
    def start(self, log: Callable[[str], None] = print) -> None:
        for binary in ("prometheus", "prometheus-alertmanager", "supervisord", "supervisorctl",
                       *EXPORTERS.values()):
            find_binary(binary)
        for name in ("kinto", "datasette", "supervisor", *EXPORTERS, "vigil-remediator",
                     "prometheus", "alertmanager"):
            self.ports[name] = free_port()
        for sub in ("kinto", "datasette", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "state").mkdir(exist_ok=True)
        self._mount_spool(log)
        log(f"creating PostgreSQL database and role {self.name}")
        try:
            self._create_database()
        except psycopg2.Error as exc:
            where = urlsplit(self.admin_url)
            detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise RuntimeError(f"cannot create the reference database on {where.hostname}:"
                               f"{where.port or 5432} (set VIGIL_REFERENCE_DATABASE_URL to a role "
                               f"with CREATEDB and CREATEROLE): {detail}") from None
        values = self._values()
        self._write_secret("kinto-database-url", self.kinto_database_url)
        self._write_secret("remediator-token", secrets.token_urlsafe(24))
        # the admin API's and console's token: never the one Alertmanager holds
        self._write_secret("remediator-admin-token", secrets.token_urlsafe(24))
        self._write_secret("remediator-database-url", _with_credentials(
            self.admin_url, self.name, self.db_password, "postgres"))
        ini = _render((REFERENCE_DIR / "kinto.ini").read_text(), values)
        for path in (self.kinto_ini, self.kinto_baseline):
            path.write_text(ini)
            path.chmod(0o600)
        self._create_datasette_db()
        shutil.copy(REFERENCE_DIR / "metadata.yml", self.dir / "datasette" / "metadata.yml")
        self.supervisor_conf.write_text(_render((REFERENCE_DIR / "supervisord.conf").read_text(), values))
        log("migrating Kinto's schema into PostgreSQL")
        migrate = subprocess.run([str(Path(sys.executable).parent / "kinto"), "migrate", "--ini",
                                  str(self.kinto_ini)], capture_output=True, text=True, timeout=120,
                                 check=False)
        if migrate.returncode != 0:
            raise RuntimeError(f"kinto migrate failed: {migrate.stderr.strip()[-500:]}")
        log("starting supervisord (kinto, datasette)")
        supervisord = ManagedProcess(
            name="supervisord", argv=[find_binary("supervisord"), "-n", "-c", str(self.supervisor_conf)],
            log_path=self.dir / "logs" / "supervisord.out")
        self.processes.append(supervisord.start())
        for program, probe in (("kinto", "/v1/__heartbeat__"), ("datasette", "/-/versions.json")):
            self._wait_http(program, f"{self.url(program)}{probe}", 60)
        self.services += list(PROGRAMS)
        self._start_exporters(log)
        self._start_remediator(log)
        self._start_alertmanager(log)
        self._start_prometheus(log)
        self._wait_all_up()
        if self.traffic:
            threading.Thread(target=self._traffic, daemon=True, name="reference-traffic").start()

    def _values(self) -> dict[str, str]:
        return {
            "VIGIL_REFERENCE_DIR": str(self.dir),
            "VIGIL_BIN_DIR": str(Path(sys.executable).parent),
            "VIGIL_KINTO_PORT": str(self.ports["kinto"]),
            "VIGIL_DATASETTE_PORT": str(self.ports["datasette"]),
            "VIGIL_KINTO_DATABASE_URL": self.kinto_database_url,
            "VIGIL_KINTO_HMAC_SECRET": secrets.token_hex(16),
            "VIGIL_SECRETS_DIR": str(self.workdir / "secrets"),
            "VIGIL_STATE_DIR": str(self.workdir / "state"),
            "VIGIL_SPOOL_DIR": str(self.spool_dir),
            "VIGIL_KINTO_DATABASE": self.name,
            "VIGIL_KINTO_USER": self.name,
            "VIGIL_DEPLOY_DIR": str(DEPLOY_DIR),
            "VIGIL_PROMETHEUS_URL": self.url("prometheus"),
            "VIGIL_ALERTMANAGER_URL": self.url("alertmanager"),
            "VIGIL_REMEDIATOR_ADDRESS": f"127.0.0.1:{self.ports['vigil-remediator']}",
        }

    def _write_secret(self, name: str, value: str) -> None:
        path = self.workdir / "secrets" / name
        path.write_text(value)
        path.chmod(0o600)

    def _mount_spool(self, log: Callable[[str], None]) -> None:
        """A size-limited tmpfs for the spool when we may mount (root), so that node_exporter
        reports a small filesystem that really fills; a plain directory otherwise."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or shutil.which("mount") is None:
            log("not root: the spool is a plain directory (the spool_fill scenario needs root)")
            return
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SPOOL_SIZE_MIB}m,mode=0755",
                              "tmpfs", str(self.spool_dir)], capture_output=True, text=True, check=False)
        self.spool_mounted = out.returncode == 0
        if not self.spool_mounted:
            log(f"could not mount a tmpfs on the spool ({out.stderr.strip()}); using a directory")

    def _admin(self) -> Any:
        conn = psycopg2.connect(self.admin_url, connect_timeout=10)
        conn.autocommit = True
        return conn

    def _create_database(self) -> None:
        ident = sql.Identifier(self.name)
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(ident), (self.db_password,))
            cur.execute(sql.SQL("CREATE DATABASE {} OWNER {} CONNECTION LIMIT {}").format(
                ident, ident, sql.Literal(KINTO_CONNECTION_LIMIT)))
        self._db_created = True

    def _drop_database(self) -> None:
        ident = sql.Identifier(self.name)
        with contextlib.closing(self._admin()) as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s OR usename = %s", (self.name, self.name))
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
            cur.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))

    def _create_datasette_db(self) -> None:
        with contextlib.closing(sqlite3.connect(self.dir / "datasette" / "reference.db")) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS releases (id INTEGER PRIMARY KEY, "
                         "package TEXT NOT NULL, version TEXT NOT NULL)")
            conn.executemany("INSERT INTO releases (package, version) VALUES (?, ?)",
                             [("kinto", "26"), ("datasette", "0.65"), ("supervisor", "4")])
            conn.commit()

    @staticmethod
    def _wait_http(name: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                resp = requests.get(url, timeout=2)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except requests.RequestException as exc:
                last = exc.__class__.__name__
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready at {url} after {timeout:.0f}s ({last})")

    def _start_exporters(self, log: Callable[[str], None]) -> None:
        log("starting postgres_exporter, node_exporter, blackbox_exporter")
        logs = self.dir / "logs"
        admin = urlsplit(self.admin_url)
        # the exporter reads the whole cluster's activity as the admin role, on the maintenance
        # database, so that it never counts against Kinto's connection limit
        dsn = urlunsplit((admin.scheme, admin.netloc, "/postgres", "sslmode=disable", ""))
        specs = {
            "postgres": ([f"--web.listen-address=127.0.0.1:{self.ports['postgres']}",
                          f"--extend.query-path={REFERENCE_DIR / 'postgres-exporter-queries.yml'}"],
                         {"DATA_SOURCE_NAME": dsn}),
            "node": ([f"--web.listen-address=127.0.0.1:{self.ports['node']}",
                      "--collector.disable-defaults", "--collector.filesystem",
                      "--collector.meminfo"], {}),
            "blackbox": ([f"--web.listen-address=127.0.0.1:{self.ports['blackbox']}",
                          f"--config.file={REFERENCE_DIR / 'blackbox.yml'}"], {}),
        }
        for job, (args, env) in specs.items():
            proc = ManagedProcess(name=f"{job}-exporter", argv=[find_binary(EXPORTERS[job]), *args],
                                  log_path=logs / f"{job}-exporter.log", env=env,
                                  ready_url=f"http://127.0.0.1:{self.ports[job]}/metrics")
            self.processes.append(proc.start())
            proc.wait_ready(30)
            self.services.append(f"{job}-exporter")

    def _generated(self, name: str, transform: Callable[[Any], Any] | None = None) -> Path:
        data = yaml.safe_load(_render((REFERENCE_DIR / name).read_text(), self._values()))
        if transform is not None:
            data = transform(data)
        out = self.workdir / "config" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(data, sort_keys=False))
        return out

    def _start_remediator(self, log: Callable[[str], None]) -> None:
        log("starting vigil-remediator")
        from vigil.demo.stack import _with_demo_waits

        config = self._generated("remediator.yml", _with_demo_waits)
        port = self.ports["vigil-remediator"]
        proc = ManagedProcess(
            name="vigil-remediator",
            argv=[sys.executable, "-c", "from vigil.remediator.service import main; main()",
                  f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
            log_path=self.workdir / "logs" / "vigil-remediator.log",
            ready_url=f"http://127.0.0.1:{port}/-/healthy")
        self.processes.append(proc.start())
        proc.wait_ready(60)
        self.services.append("vigil-remediator")

    def _start_alertmanager(self, log: Callable[[str], None]) -> None:
        log("starting alertmanager")
        from vigil.demo.stack import _rewrite

        def transform(doc: dict[str, Any]) -> dict[str, Any]:
            doc = _rewrite(doc, {"127.0.0.1:9095": f"127.0.0.1:{self.ports['vigil-remediator']}",
                                 "${VIGIL_SECRETS_DIR}": str(self.workdir / "secrets")})
            doc = scale_alertmanager_config(doc, self.time_scale)
            return self.am_transform(doc) if self.am_transform else doc

        data = transform(yaml.safe_load((DEPLOY_DIR / "alertmanager.yml").read_text()))
        path = self.workdir / "config" / "alertmanager.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        am, _ = start_alertmanager(self.workdir / "alertmanager", path, port=self.ports["alertmanager"])
        self.processes.append(am)
        am.wait_ready(30)

    def _start_prometheus(self, log: Callable[[str], None]) -> None:
        log("starting prometheus")
        # the rules generated from the stack's service spec (signals and the alerts on them),
        # and the one alert the spec cannot express, all on compressed time
        rules = [scale_rule_file(REFERENCE_DIR / name, self.workdir / "rules" / Path(name).name,
                                 self.time_scale) for name in RULE_FILES]
        scrape = {"postgres": [f"127.0.0.1:{self.ports['postgres']}"],
                  "node": [f"127.0.0.1:{self.ports['node']}"],
                  "vigil-remediator": [f"127.0.0.1:{self.ports['vigil-remediator']}"]}
        probes = {
            "job_name": "blackbox",
            "metrics_path": "/probe",
            "static_configs": [{"targets": [f"{self.url(program)}{path}"],
                                "labels": {"program": program, "probe": kind, "module": module}}
                               for program, kind, module, path in PROBES],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["module"], "target_label": "__param_module"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": f"127.0.0.1:{self.ports['blackbox']}"},
            ],
        }
        prom, _ = start_prometheus(
            self.workdir / "prometheus",
            prometheus_config(scrape, rule_files=rules,
                              alertmanagers=[f"127.0.0.1:{self.ports['alertmanager']}"],
                              extra_scrape_configs=[probes]),
            port=self.ports["prometheus"])
        self.processes.append(prom)
        prom.wait_ready(30)

    def _wait_all_up(self, timeout: float = 60) -> None:
        """Wait until every scrape and every probe succeeds once, so that no alert starts from
        the stack's own start-up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = self.query("up") + self.query("probe_success")
            if len(up) == 3 + 2 * len(PROBES) and all(r["value"][1] == "1" for r in up):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the reference stack is not all up after {timeout:.0f}s: "
                           + ", ".join(f"{r['metric'].get('job')}/{r['metric'].get('program', '')}"
                                       f"={r['value'][1]}" for r in self.query("up")))

    def _traffic(self) -> None:
        """A little real use: Kinto records written and read, Datasette tables queried."""
        auth = self.kinto_auth()
        kinto = f"{self.url('kinto')}/v1/buckets/vigil"
        i = 0
        while not self._stop_traffic.wait(0.5):
            i += 1
            with contextlib.suppress(requests.RequestException):
                if i % 2 == 0:
                    requests.get(f"{self.url('datasette')}/reference/releases.json", timeout=3)
                    continue
                resp = requests.put(f"{kinto}/collections/notes/records/n{i % 50}",
                                    json={"data": {"n": i}}, auth=auth, timeout=3)
                if resp.status_code in (403, 404):  # the bucket and collection come first
                    requests.put(kinto, json={}, auth=auth, timeout=3)
                    requests.put(f"{kinto}/collections/notes", json={}, auth=auth, timeout=3)

    def stop(self) -> None:
        self._stop_traffic.set()
        for proc in reversed(self.processes):
            proc.stop()
        if self.spool_mounted:
            subprocess.run(["umount", "-l", str(self.spool_dir)], capture_output=True, check=False)
            self.spool_mounted = False
        if self._db_created:
            with contextlib.suppress(psycopg2.Error):
                self._drop_database()
            self._db_created = False


def run_demo(args: Any) -> int:
    """`vigil demo --stack reference`: start the reference stack, print where everything is,
    run until Ctrl-C or --duration."""
    import tempfile

    from vigil.demo.stack import stop_on_sigterm, watch

    from vigil.procs import BinaryNotFound

    if args.time_scale <= 0:
        print(f"vigil demo: error: --time-scale must be positive, got {args.time_scale:g}",
              file=sys.stderr)
        return 2
    stop_on_sigterm()
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="vigil-reference-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = ReferenceStack(workdir, time_scale=args.time_scale)
    print(f"vigil demo: reference stack, working directory {workdir}")
    try:
        stack.start(log=lambda m: print(f"  {m}", flush=True))
        print("\nVigil reference stack is up:")
        for name in ("kinto", "datasette", "postgres", "node", "blackbox", "vigil-remediator",
                     "prometheus", "alertmanager"):
            label = f"{name}-exporter" if name in EXPORTERS else name
            print(f"  {label:<22} {stack.url(name)}")
        print(f"  {'supervisorctl':<22} supervisorctl -c {stack.supervisor_conf} status")
        print(f"  {'kinto database':<22} {stack.name} (role {stack.name}, "
              f"CONNECTION LIMIT {KINTO_CONNECTION_LIMIT})")
        print(f"  {'spool':<22} {stack.spool_dir}"
              + (f" (tmpfs, {SPOOL_SIZE_MIB} MiB)" if stack.spool_mounted else " (a directory)"))
        print("\nTry a fault:  kill -STOP $(supervisorctl -c "
              f"{stack.supervisor_conf} pid kinto)", flush=True)
        print("Press Ctrl-C to stop.\n", flush=True)
        if watch(stack.processes, args.duration) != 0:
            return 1
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    except (TimeoutError, RuntimeError, BinaryNotFound, psycopg2.Error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        print(f"vigil demo: error: {first}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("vigil demo: stopped cleanly")
    return 0
