"""Grafana provisioning files: datasource uids match the dashboards, and the read-only role
that the incident-store datasource logs in with really is read-only (real PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url
from vigil.grafana import common

from tests.harness import require_binary
from vigil.paths import GRAFANA_DIR

PROVISIONING = GRAFANA_DIR / "provisioning"


def test_datasource_uids_and_types_match_the_dashboards() -> None:
    config = yaml.safe_load((PROVISIONING / "datasources/vigil.yml").read_text())
    by_uid = {d["uid"]: d for d in config["datasources"]}
    assert by_uid[common.PROMETHEUS_UID]["type"] == common.PROMETHEUS_TYPE
    assert by_uid[common.POSTGRES_UID]["type"] == common.POSTGRES_TYPE
    postgres = by_uid[common.POSTGRES_UID]
    assert postgres["secureJsonData"]["password"].startswith("$__file{")
    assert "password" not in postgres.get("jsonData", {})


def test_dashboard_provider_points_at_a_folder() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards/vigil.yml").read_text())
    provider = config["providers"][0]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    assert provider["options"]["path"].startswith("/")


def test_grafana_reader_role_can_read_but_not_write(pg_database_url: str, tmp_path: Path) -> None:
    psql = require_binary("psql")
    url = make_url(pg_database_url)
    role = f"vigil_grafana_{uuid.uuid4().hex[:8]}"
    password_file = tmp_path / "grafana-db-password"
    password_file.write_text("not-a-real-password")
    env = {**os.environ, "POSTGRES_USER": url.username or "postgres",
           "POSTGRES_DB": str(url.database), "PGHOST": url.host or "127.0.0.1",
           "PGPORT": str(url.port or 5432), "VIGIL_GRAFANA_DB_USER": role,
           "VIGIL_GRAFANA_DB_PASSWORD_FILE": str(password_file)}
    if url.password:
        env["PGPASSWORD"] = url.password
    script = PROVISIONING / "postgres/10-grafana-reader.sh"
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert psql and result.returncode == 0, result.stdout + result.stderr
    assert "not-a-real-password" not in result.stdout + result.stderr
    owner = sa.create_engine(pg_database_url)
    reader = sa.create_engine(url.set(username=role, password="not-a-real-password"))
    try:
        # The remediator creates its tables after the init script ran, as the owner.
        from tests.grafana.test_sql import create_incident_schema

        create_incident_schema(pg_database_url)
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar() == 0
        with reader.connect() as conn, pytest.raises(sa.exc.ProgrammingError):
            conn.execute(sa.text("DELETE FROM incidents"))
    finally:
        reader.dispose()
        owner.dispose()
        # the role is cluster-wide: drop its grants in the test database, then the role
        cleanup = sa.create_engine(pg_database_url, isolation_level="AUTOCOMMIT")
        with cleanup.connect() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        cleanup.dispose()
