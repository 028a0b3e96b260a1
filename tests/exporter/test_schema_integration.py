"""A target's `schema:` block (vigil.exporter.schema's model) runs through the exporter and
`vigil validate` like every other check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
import yaml
from vigil.exporter.checks import build_checks
from vigil.exporter.config import load_config


def test_schema_block_is_typed_and_its_checks_run(pg_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a table without a primary key: a lint finding
        conn.execute(sa.text("CREATE TABLE audit_log (at timestamptz, what text)"))
    engine.dispose()
    url_file = tmp_path / "db-url"
    url_file.write_text(pg_url)
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "db",
                        "base_url": "http://127.0.0.1:9",
                        "schema": {"url_file": "db-url"},
                    }
                ]
            }
        )
    )
    loaded = load_config(config)
    from vigil.exporter.schema import SchemaCheckConfig

    assert isinstance(loaded.targets[0].schema_, SchemaCheckConfig)
    assert "schema_lint" in [c.name for c in build_checks(loaded)]

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "validate",
            f"--config.file={config}",
            "--format=json",
            "--fail-on=warning",
        ],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env=dict(os.environ),
    )
    doc = json.loads(out.stdout)
    checks = {c["check"]: c for c in doc["targets"][0]["checks"]}
    assert checks["schema_lint"]["success"], checks["schema_lint"]["error"]
    assert any(f["rule"] == "table_without_primary_key" for f in checks["schema_lint"]["findings"])
    assert out.returncode == 1


def test_bad_schema_block_points_at_its_key_path(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "db",
                        "base_url": "http://127.0.0.1:9",
                        "schema": {"url_env": "X", "bogus": 1},
                    }
                ]
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "check-config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "targets[0].schema" in out.stderr, out.stderr
