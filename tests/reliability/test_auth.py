"""Unauthenticated and wrongly authenticated requests to every endpoint change nothing.

Every operation in /api/v1/openapi.json (except the document itself, which is public) is
called with each kind of bad credential, on a real remediator process with PostgreSQL that
holds an incident awaiting approval. Each call must be refused (401, or 403 when the admin API
is disabled) and the store must be exactly as before: no notification, no approval, no kill
switch, no procedure run.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import requests
from vigil.remediator.openapi import OPENAPI

from tests.reliability.helpers import (
    ADMIN_TOKEN,
    WEBHOOK_AUTH,
    WEBHOOK_TOKEN,
    Recorder,
    RemediatorSpec,
    alert,
    notification,
    remediator_config,
    remediator_process,
    store_rows,
    table_counts,
)

PUBLIC = {"/api/v1/openapi.json"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def bad_credentials(realm_token: str, other_token: str) -> dict[str, dict[str, str]]:
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong bearer": {"Authorization": "Bearer not-the-token"},
        "other realm's token": {"Authorization": f"Bearer {other_token}"},
        "token with a suffix": {"Authorization": f"Bearer {realm_token}x"},
        "token prefix only": {"Authorization": f"Bearer {realm_token[:-1]}"},
        "wrong scheme": {"Authorization": f"Token {realm_token}"},
        "basic, token as password": {"Authorization": basic("admin", realm_token)},
        "basic, not base64": {"Authorization": "Basic !!!not-base64!!!"},
        "basic, not utf-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        "huge header": {"Authorization": "Bearer " + "x" * 6000},
        "token in the query": {},  # handled below: ?token=... is not a credential
    }


def operations(incident_id: int) -> list[tuple[str, str]]:
    ops = []
    for path, item in OPENAPI["paths"].items():
        if path in PUBLIC:
            continue
        for method in item:
            ops.append((method.upper(), path.replace("{id}", str(incident_id))))
    return ops


def request(spec: RemediatorSpec, method: str, path: str, headers: dict[str, str],
            query: dict[str, str] | None = None) -> requests.Response:
    body = notification(alert("AuthProbe", "cc", labels={"id": "9"})) if path.endswith("/alerts") else {}
    return requests.request(method, f"{spec.url}{path}", json=body, headers=headers, params=query,
                            timeout=10)


def start_with_incident(tmp_path: Path, pg_url: str, start_process: Any, recorder: Recorder,
                        **settings: Any) -> tuple[RemediatorSpec, int]:
    procs = [{"name": "approve-me", "match": ['alertname=~"Auth.*"'], "requires_approval": True,
              "cooldown": 0, "steps": [{"action": "http", "url": f"{recorder.url}/log/ran"}]}]
    spec = remediator_config(tmp_path, pg_url, "auth", procs, **settings)
    start_process(remediator_process(spec, tmp_path))
    resp = requests.post(f"{spec.url}/api/v1/alerts", headers=WEBHOOK_AUTH, timeout=10,
                         json=notification(alert("AuthSeed", "aa")))
    assert resp.status_code == 200, resp.text
    from tests.harness import wait_for

    row = wait_for(lambda: store_rows(pg_url, "SELECT id FROM incidents WHERE state = 'awaiting_approval'"),
                   timeout=30, what="the seeded incident to await approval")
    return spec, int(row[0]["id"])


def test_bad_credentials_on_every_endpoint_change_nothing(tmp_path: Path, pg_url: str,
                                                          start_process: Any) -> None:
    recorder = Recorder().start()
    try:
        spec, incident_id = start_with_incident(tmp_path, pg_url, start_process, recorder)
        before = table_counts(pg_url)
        refused = 0
        for method, path in operations(incident_id):
            webhook = path == "/api/v1/alerts"
            realm, other = (WEBHOOK_TOKEN, ADMIN_TOKEN) if webhook else (ADMIN_TOKEN, WEBHOOK_TOKEN)
            for name, headers in bad_credentials(realm, other).items():
                query = {"token": realm, "access_token": realm} if name == "token in the query" else None
                resp = request(spec, method, path, headers, query)
                assert resp.status_code == 401, (method, path, name, resp.status_code, resp.text[:200])
                assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer realm=")
                assert realm not in resp.text and other not in resp.text
                refused += 1
        print(f"\n{refused} badly authenticated requests refused")
        assert refused == len(operations(incident_id)) * len(bad_credentials("a", "b"))
        assert table_counts(pg_url) == before
        state = store_rows(pg_url, "SELECT state, approved_by FROM incidents WHERE id = :i", i=incident_id)
        assert state == [{"state": "awaiting_approval", "approved_by": None}]
        assert store_rows(pg_url, "SELECT * FROM control_flags") == []
        assert recorder.counts() == {}
        # the same requests with the right credentials do act: the refusals above were real
        ok = requests.post(f"{spec.url}/api/v1/control/pause", timeout=10,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200
        assert store_rows(pg_url, "SELECT value FROM control_flags WHERE name = 'paused'") == [
            {"value": "true"}]
    finally:
        recorder.stop()


def test_admin_api_without_configured_credentials_is_disabled(tmp_path: Path, pg_url: str,
                                                              start_process: Any) -> None:
    recorder = Recorder().start()
    try:
        spec, incident_id = start_with_incident(tmp_path, pg_url, start_process, recorder,
                                                admin={})
        before = table_counts(pg_url)
        for method, path in operations(incident_id):
            if path == "/api/v1/alerts":
                continue
            for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"},
                            {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}):
                resp = request(spec, method, path, headers)
                assert resp.status_code == 403, (method, path, resp.status_code)
        assert table_counts(pg_url) == before
        assert recorder.counts() == {}
    finally:
        recorder.stop()
