"""The reference stack's service spec (deploy/reference/services.yml) through `vigil rules
generate`: every generated signal recording rule returns data from the real exporters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from vigil.demo.reference import REFERENCE_DIR, ReferenceStack

from tests.harness import prom_query, require_binary, wait_for
from vigil.procs import start_prometheus

# blackbox probes plain http on loopback: there is no certificate to expire
NO_DATA_HERE = {"target:tls_expiry:timestamp_seconds"}


def test_generated_signals_return_data(reference: ReferenceStack, tmp_path: Path) -> None:
    require_binary("promtool")
    out = subprocess.run([sys.executable, "-m", "vigil.cli", "rules", "generate", "--spec",
                          str(REFERENCE_DIR / "services.yml"), "--out", str(tmp_path / "rules")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    signals = tmp_path / "rules" / "signals.rules.yml"
    records = {r["record"] for g in yaml.safe_load(signals.read_text())["groups"]
               for r in g["rules"] if "record" in r}
    assert {"target:connections_used:count", "target:connections_max:count",
            "target:disk_used:bytes", "target:disk_capacity:bytes",
            "target:probe_success:bool"} <= records
    # a second Prometheus on the stack's own scrape config, with the generated rules only
    config = yaml.safe_load((reference.workdir / "prometheus" / "prometheus.yml").read_text())
    config.pop("alerting", None)
    config["rule_files"] = [str(signals)]
    prom, url = start_prometheus(tmp_path / "prom", config, name="prometheus-signals")
    try:
        prom.wait_ready(30)
        for name in sorted(records - NO_DATA_HERE):
            def query(expr: str = name) -> list[dict[str, Any]]:
                return prom_query(url, expr)

            rows = wait_for(query, timeout=30, interval=0.5, what=f"{name} to return data")
            assert all("target" in r["metric"] for r in rows), rows
        # this stack's own database (another stack's may share the server)
        kinto = prom_query(url, f'target:connections_max:count{{target="kinto",datname="{reference.name}"}}')
        assert [float(r["value"][1]) for r in kinto] == [20.0]  # the database's CONNECTION LIMIT
    finally:
        prom.stop()
