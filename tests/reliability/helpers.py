"""Shared pieces for the reliability tests: a recording HTTP server, real remediator processes,
and queries that read the incident store directly (the ground truth, not the API)."""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from vigil.procs import ManagedProcess, free_port

__all__ = [
    "ADMIN_AUTH",
    "ADMIN_TOKEN",
    "TABLES",
    "WEBHOOK_AUTH",
    "WEBHOOK_TOKEN",
    "HostileServer",
    "Recorder",
    "RemediatorSpec",
    "TcpProxy",
    "alert",
    "metric_value",
    "notification",
    "post_to_alertmanager",
    "remediator_config",
    "remediator_process",
    "rss_peak_bytes",
    "store_rows",
    "table_counts",
    "upstream_of",
    "via_proxy",
]

WEBHOOK_TOKEN = "reliability-webhook-token"
ADMIN_TOKEN = "reliability-admin-token"
WEBHOOK_AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TABLES = ("notifications", "alerts", "incidents", "attempts", "audit_log", "control_flags")


@dataclass
class Recorder:
    """A loopback HTTP server standing in for the remediated service.

    - POST /log/<id>: the procedure's side effect; every call is recorded, so a duplicate run
      shows up as a repeated id.
    - GET /metrics: `reliability_fault{id="..."} 1` for each id in `firing` (what Prometheus
      scrapes, so the test decides which alerts fire).
    - POST /escalate: the escalation sink; bodies are kept.
    - any other path: recorded with its headers (for redirect and credential checks).
    """

    log: list[str] = field(default_factory=list)
    escalations: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    firing: set[str] = field(default_factory=set)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Recorder:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with recorder.lock:
                    recorder.requests.append(("GET", self.path, dict(self.headers)))
                if self.path == "/metrics":
                    with recorder.lock:
                        ids = sorted(recorder.firing)
                    text = "# TYPE reliability_fault gauge\n" + "".join(
                        f'reliability_fault{{id="{i}"}} 1\n' for i in ids)
                    self._answer(200, text.encode(), "text/plain; version=0.0.4")
                    return
                self._answer(200, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder.lock:
                    recorder.requests.append(("POST", self.path, dict(self.headers)))
                    if self.path.startswith("/log/"):
                        recorder.log.append(self.path[len("/log/"):])
                    elif self.path == "/escalate":
                        try:
                            recorder.escalations.append(json.loads(body or b"{}"))
                        except ValueError:
                            recorder.escalations.append({"raw": body.decode(errors="replace")})
                self._answer(200, b'{"status":"ok"}')

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port or free_port()), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.log)


@dataclass
class RemediatorSpec:
    config_path: Path
    port: int
    replica: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def remediator_config(tmp_path: Path, database_url: str, replica: str,
                      procedures: list[dict[str, Any]], **settings: Any) -> RemediatorSpec:
    """Write a remediator config (tokens in files, as in production) and pick a port."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "webhook-token").write_text(WEBHOOK_TOKEN + "\n")
    (secrets / "admin-token").write_text(ADMIN_TOKEN + "\n")
    data: dict[str, Any] = {
        "database_url": database_url, "replica_id": replica,
        "webhook": {"bearer_token_file": str(secrets / "webhook-token")},
        "admin": {"bearer_token_file": str(secrets / "admin-token")},
        "max_concurrent": 8, "procedures": procedures,
    }
    data.update(settings)
    path = tmp_path / f"remediator-{replica}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return RemediatorSpec(path, free_port(), replica)


def remediator_process(spec: RemediatorSpec, log_dir: Path) -> ManagedProcess:
    """The remediator as `vigil demo` runs it: a real process with Prometheus-style flags."""
    return ManagedProcess(
        name=f"remediator-{spec.replica}", log_path=log_dir / f"remediator-{spec.replica}.log",
        argv=[sys.executable, "-c", "from vigil.remediator.service import main; main()",
              f"--config.file={spec.config_path}", f"--web.listen-address=127.0.0.1:{spec.port}"],
        ready_url=f"{spec.url}/-/ready")


def _engine(database_url: str) -> sa.Engine:
    return sa.create_engine(database_url, poolclass=sa.pool.NullPool)


def table_counts(database_url: str) -> dict[str, int]:
    """Rows per remediator table: a state change shows up here."""
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                    for t in TABLES}
    finally:
        engine.dispose()


def store_rows(database_url: str, sql: str, **binds: Any) -> list[dict[str, Any]]:
    engine = _engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), binds)]
    finally:
        engine.dispose()


def alert(name: str, fingerprint: str, *, status: str = "firing",
          starts_at: str = "2026-11-26T10:00:00.123456789Z",
          labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, **(labels or {})}, "annotations": {},
            "startsAt": starts_at,
            "endsAt": "2026-11-26T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0,
            "status": status, "receiver": "vigil-remediator", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager", "alerts": list(alerts)}


def iter_ids(n: int) -> Iterator[str]:
    return (str(i) for i in range(n))


class TcpProxy:
    """A loopback TCP proxy the test can cut: `stop()` closes the listener and every live
    connection (the client sees refused connections and broken sockets), `start()` reopens it
    on the same port. Used to take PostgreSQL away from one process without touching the
    server other tests share."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        import socket

        self.upstream = upstream
        self.port = port or free_port()
        self._socket = socket
        self._listener: Any = None
        self._conns: set[Any] = set()
        self._lock = threading.Lock()
        self.accepted = 0
        # a partition rather than a refusal: connections are accepted, nothing gets through
        self.blackhole = threading.Event()

    def start(self) -> TcpProxy:
        sock = self._socket.socket(self._socket.AF_INET, self._socket.SOCK_STREAM)
        sock.setsockopt(self._socket.SOL_SOCKET, self._socket.SO_REUSEADDR, 1)
        import time

        deadline = time.monotonic() + 15
        while True:  # the port can stay busy for a moment after cut connections
            try:
                sock.bind(("127.0.0.1", self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        sock.listen(64)
        self._listener = sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()
        return self

    def _accept(self, listener: Any) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if self.blackhole.is_set():
                with self._lock:
                    if self._listener is listener:
                        self._conns.add(client)  # held open, never answered
                        continue
                client.close()  # stopped meanwhile
                return
            try:
                server = self._socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    server.close()
                    return
                self._conns |= {client, server}
                self.accepted += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: Any, dst: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.blackhole.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(self._socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            with self._lock:
                self._conns -= {src, dst}

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = set(self._conns), set()
        if listener is not None:
            listener.close()
        for s in conns:
            try:
                s.shutdown(self._socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def via_proxy(database_url: str, proxy: TcpProxy) -> str:
    """The same database URL, reached through the proxy."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(
        hide_password=False)


def upstream_of(database_url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    return (url.host or "127.0.0.1", url.port or 5432)


def post_to_alertmanager(am_url: str, alerts: list[dict[str, Any]]) -> None:
    """Push alerts into Alertmanager's API, as Prometheus does."""
    import requests

    resp = requests.post(f"{am_url}/api/v2/alerts", json=alerts, timeout=10)
    resp.raise_for_status()


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples of one family in an exposition text whose labels include `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


class HostileServer:
    """A raw-socket HTTP peer that misbehaves on purpose. Modes:

    - `hang`: accepts, reads, never answers.
    - `garbage`: answers bytes that are not HTTP, then closes.
    - `endless`: a 200 whose chunked body never ends (as fast as the client reads).
    - `drip`: a status line and headers one byte per `drip_interval` seconds, forever.
    - `huge_headers`: a 200 with `header_bytes` of headers.
    - `redirect`: a 302 to `location` (another host), for credential-leak checks.
    Every request's raw head is kept in `heads` (to see what a client sent).
    """

    def __init__(self, mode: str, *, location: str = "", header_bytes: int = 1 << 20,
                 drip_interval: float = 0.5, tls_context: Any = None) -> None:
        import socket

        self.mode = mode
        self.location = location
        self.header_bytes = header_bytes
        self.drip_interval = drip_interval
        self.tls_context = tls_context
        self.heads: list[bytes] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._clients: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls_context else 'http'}://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._clients.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_head(self, conn: Any) -> bytes:
        data = b""
        conn.settimeout(5)
        while b"\r\n\r\n" not in data and len(data) < 1 << 16:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

    def _serve(self, conn: Any) -> None:
        try:
            if self.tls_context is not None:
                conn = self.tls_context.wrap_socket(conn, server_side=True)
            head = self._read_head(conn)
            self.heads.append(head)  # list.append is atomic under the GIL
            if self.mode == "hang":
                self._stop.wait()
            elif self.mode == "garbage":
                conn.sendall(b"\x00\xff\xfeNOT HTTP AT ALL\r\n\x1b[31m\r\n\r\n" + bytes(range(256)))
            elif self.mode == "endless":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
                while not self._stop.is_set():
                    conn.sendall(chunk)
            elif self.mode == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
                    if self._stop.wait(self.drip_interval):
                        break
                    conn.sendall(bytes([byte]))
            elif self.mode == "huge_headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
                line = b"X-Big: " + b"b" * 8000 + b"\r\n"
                sent = 0
                while sent < self.header_bytes:
                    conn.sendall(line)
                    sent += len(line)
                conn.sendall(b"Content-Length: 2\r\n\r\nok")
            elif self.mode == "redirect":
                conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: " + self.location.encode()
                             + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._clients:
            try:
                conn.close()
            except OSError:
                pass


def rss_peak_bytes(pid: int) -> int:
    """The process' peak resident set (VmHWM) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")
