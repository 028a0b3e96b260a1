"""Fault scenarios of the reference stack (demo/reference.py): real faults on Kinto, Datasette,
their PostgreSQL database and the spool filesystem, scored like the demo's (docs/scenarios.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from typing import Any

import psycopg2
from vigil.demo.reference import KINTO_CONNECTION_LIMIT, ReferenceStack
from vigil.demo.scenarios import Context, Scenario

__all__ = ["REFERENCE_SCENARIOS"]

MiB = 1024 * 1024
SPOOL_RATE = 2 * MiB  # bytes a second the spool writer adds
SPOOL_CAP = 0.85  # the writer stops once it has written this share of the filesystem
LEAK_RATE = 1.0  # idle connections a second the leak opens
LEAK_TOTAL = 17  # connections the stuck worker opens in all, then leaves idle


def _stack(ctx: Context) -> ReferenceStack:
    assert isinstance(ctx.stack, ReferenceStack)
    return ctx.stack


def _now(ctx: Context) -> float:
    return ctx.t0


def _never(ctx: Context) -> None:
    return None


def _hang_kinto(ctx: Context) -> None:
    """SIGSTOP Kinto: the process is alive (supervisord sees RUNNING) but answers nothing."""
    pid = _stack(ctx).program_pid("kinto")
    ctx.notes["stopped_pid"] = pid
    os.kill(pid, signal.SIGSTOP)


def _kill_datasette(ctx: Context) -> None:
    os.kill(_stack(ctx).program_pid("datasette"), signal.SIGKILL)


def _drift_kinto_config(ctx: Context) -> None:
    """A hand edit turns Kinto read-only, and a deploy restarts it with the drifted file."""
    stack = _stack(ctx)
    text = stack.kinto_ini.read_text()
    stack.kinto_ini.write_text(text.replace("kinto.readonly = false", "kinto.readonly = true"))
    stack.supervisorctl("restart", "kinto")


def _leak_connections(ctx: Context) -> None:
    """A stuck worker of Kinto's role opens LEAK_TOTAL connections to its database, one a
    second, and leaves them idle: the database runs towards its connection limit."""
    stack = _stack(ctx)
    held: list[Any] = []
    stop = threading.Event()
    ctx.notes.update(held=held, stop=stop, used0=_connections(stack))

    def leak() -> None:
        while len(held) < LEAK_TOTAL and not stop.wait(1.0 / LEAK_RATE):
            try:
                conn = psycopg2.connect(stack.kinto_database_url, connect_timeout=3,
                                        application_name="vigil-scenario-leak")
            except psycopg2.OperationalError:
                continue  # at the limit: the leak keeps trying, as a leaking pool does
            held.append(conn)

    threading.Thread(target=leak, daemon=True, name="connection-leak").start()


def _connections(stack: ReferenceStack) -> float:
    rows = stack.query(f'sum(pg_stat_activity_count{{datname="{stack.name}"}})')
    return float(rows[0]["value"][1]) if rows else 0.0


def _limit_reached(ctx: Context) -> float:
    """When the leak would fill the limit (it stops short of it: users are hurt at the limit,
    so reaching it at all is the failure the alert must come before)."""
    return ctx.t0 + (KINTO_CONNECTION_LIMIT - ctx.notes["used0"]) / LEAK_RATE


def _fill_spool(ctx: Context) -> None:
    """Write 1 MiB spool files at SPOOL_RATE until SPOOL_CAP of the filesystem was written."""
    stack = _stack(ctx)
    st = os.statvfs(stack.spool_dir)
    size, avail = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    stop = threading.Event()
    ctx.notes.update(stop=stop, avail0=avail)
    budget = int(SPOOL_CAP * size) - (size - avail)

    def write() -> None:
        written, n = 0, 0
        chunk = os.urandom(MiB)
        while written < budget and not stop.wait(MiB / SPOOL_RATE):
            n += 1
            with contextlib.suppress(OSError):
                (stack.spool_dir / f"batch-{n:05d}.spool").write_bytes(chunk)
            written += MiB

    threading.Thread(target=write, daemon=True, name="spool-writer").start()


def _spool_full(ctx: Context) -> float:
    return ctx.t0 + ctx.notes["avail0"] / SPOOL_RATE


def _undo(ctx: Context) -> None:
    """Stop the fault threads, close leaked connections, remove spool files, put the baseline
    config back, and bring every program back to RUNNING."""
    stack = _stack(ctx)
    if "stop" in ctx.notes:
        ctx.notes["stop"].set()
    for conn in ctx.notes.get("held", []):
        with contextlib.suppress(psycopg2.Error):
            conn.close()
    for path in stack.spool_dir.glob("*.spool"):
        path.unlink(missing_ok=True)
    if "stopped_pid" in ctx.notes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ctx.notes["stopped_pid"], signal.SIGCONT)
    restart = stack.kinto_ini.read_bytes() != stack.kinto_baseline.read_bytes()
    stack.kinto_ini.write_bytes(stack.kinto_baseline.read_bytes())
    status = stack.supervisorctl("status", check=False)
    for line in status.splitlines():
        program, _, state = line.partition(" ")
        if state.split() and (state.split()[0] != "RUNNING" or (program == "kinto" and restart)):
            stack.supervisorctl("restart", program, check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "RUNNING" not in stack.supervisorctl("status", "kinto",
                                                                                 check=False):
        time.sleep(0.5)


RELATED_DOWN = r"TargetProbeFailing"
REFERENCE_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("control", "real use of Kinto and Datasette and no fault: every alert is a false positive",
             "control", lambda c: None, _never, "", r"(?!)", "none", 600, undo=_undo,
             stack="reference", primary_metric='min(probe_success{job="blackbox"})'),
    Scenario("app_hung", "Kinto is SIGSTOPped (alive to supervisord, deaf to users); "
             "supervisorctl restart", "error", _hang_kinto, _now, "TargetProbeFailing",
             r"TargetProbeFailing|ReferenceConfigDrift", "auto", 90, undo=_undo, stack="reference",
             primary_metric='probe_success{probe="health",program="kinto"}'),
    Scenario("app_killed", "Datasette is SIGKILLed and supervisord leaves it down; "
             "supervisorctl restart", "error", _kill_datasette, _now, "TargetProbeFailing",
             RELATED_DOWN, "auto", 90, undo=_undo, stack="reference",
             primary_metric='probe_success{probe="health",program="datasette"}'),
    Scenario("db_connections", f"a stuck worker opens {LEAK_TOTAL} idle connections to Kinto's "
             f"database, one a second, towards its limit of {KINTO_CONNECTION_LIMIT}; idle "
             "backends terminated",
             "resource", _leak_connections, _limit_reached, "ReferenceDbConnectionsNearLimit",
             r"ReferenceDbConnectionsNearLimit|TargetDbPoolExhaustionPredicted|TargetDbPoolExhausted", "auto", 90, undo=_undo, stack="reference",
             primary_metric='sum by (datname) (pg_stat_activity_count{datname=~"refstack_.+"})'),
    Scenario("spool_fill", "1 MiB spool files arrive at 2 MiB/s on the 64 MiB spool filesystem; "
             "spool cleaned", "resource", _fill_spool, _spool_full, "TargetDiskFillPredicted",
             r"TargetDiskFillPredicted", "auto", 90, undo=_undo, stack="reference",
             primary_metric='node_filesystem_avail_bytes{mountpoint=~".*/spool"}'),
    Scenario("config_drift", "kinto.ini turns read-only and Kinto restarts with it; baseline "
             "restored and Kinto restarted", "config", _drift_kinto_config, _now,
             "ReferenceConfigDrift", r"ReferenceConfigDrift|TargetProbeFailing", "auto", 90,
             undo=_undo, stack="reference",
             primary_metric='probe_success{probe="config",program="kinto"}'),
)
