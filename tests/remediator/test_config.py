"""Procedures config: matchers, parameter patterns, check-config, simulate, admin API, TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from vigil.remediator.config import Matcher, load_config, parse_config
from vigil.remediator.matching import match_alert
from vigil.remediator.service import ssl_context

from tests.remediator.conftest import (
    ADMIN_AUTH,
    WEBHOOK_TOKEN,
    alert,
    notification,
    post,
    procedure,
)
from vigil.config import ConfigError
from vigil.paths import DEPLOY_DIR

VIGIL = [sys.executable, "-m", "vigil.cli"]


@pytest.mark.parametrize("op,value,labels,expected", [
    ("=", "a", {"x": "a"}, True), ("=", "a", {"x": "ab"}, False),
    ("!=", "a", {"x": "b"}, True), ("!=", "a", {}, True), ("!=", "", {}, False),
    ("=~", "a|b", {"x": "b"}, True), ("=~", "a", {"x": "ab"}, False),  # anchored, as Alertmanager
    ("!~", "a.*", {"x": "abc"}, False), ("!~", "a.*", {"x": "bc"}, True),
    ("=", "", {}, True),  # a missing label equals the empty string
])
def test_matcher_operators(op: str, value: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher(name="x", op=op, value=value).matches(labels) is expected


def test_first_matching_procedure_and_params() -> None:
    config = parse_config({"procedures": [
        procedure("a", match=['alertname="A"', 'severity!~"info|none"']),
        procedure("b", match=['alertname=~"A|B"'],
                  params={"host": {"label": "instance", "pattern": r"[a-z]+:\d+"},
                          "why": {"annotation": "summary", "pattern": "[A-Za-z ]+", "default": "x"}}),
    ]})
    m = match_alert(config, {"labels": {"alertname": "A", "severity": "info", "instance": "h:1"},
                             "fingerprint": "ab"})
    assert m.procedure is not None and m.procedure.name == "b"
    assert m.params == {"alertname": "A", "fingerprint": "ab", "host": "h:1", "why": "x"}
    refused = match_alert(config, {"labels": {"alertname": "B", "instance": "h:1 && reboot"},
                                   "fingerprint": "ab"})
    assert refused.refused.startswith("parameter 'host'") and "reboot" not in refused.refused
    missing = match_alert(config, {"labels": {"alertname": "B"}, "fingerprint": "ab"})
    assert "label 'instance' is missing" in missing.refused
    assert match_alert(config, {"labels": {"alertname": "C"}, "fingerprint": "ab"}).procedure is None


@pytest.mark.parametrize("mutate,path,message", [
    (lambda p: p["steps"][0].update(url="http://${nope}/"), "procedures[0].steps[0]",
     "template ${nope} is not a declared parameter"),
    (lambda p: p.update(match=['alertname=~"("']), "procedures[0].match[0]", "invalid regular expression"),
    (lambda p: p.update(match=["alertname ~ x"]), "procedures[0].match[0]", "expected a matcher"),
    (lambda p: p["steps"][0].update(action="shell"), "procedures[0].steps[0]", "does not match any"),
    (lambda p: p.update(cooldown="soon"), "procedures[0].cooldown", "expected a duration"),
    (lambda p: p["steps"][0].update(credentials="ghost"), "procedures[0].steps[0].credentials",
     "unknown credentials"),
    (lambda p: p.update(params={"x": {"label": "a", "annotation": "b", "pattern": "."}}),
     "procedures[0].params.x", "exactly one of"),
])
def test_config_errors_name_the_key_path(mutate: Any, path: str, message: str) -> None:
    proc = procedure("p", steps=[{"action": "http", "url": "http://h/"}])
    mutate(proc)
    with pytest.raises(ConfigError) as err:
        parse_config({"replica_id": "x", "procedures": [proc]}, "r.yml")
    assert err.value.path.startswith(path), str(err.value)
    assert message in str(err.value)


def test_bundled_files_pass_check_config() -> None:
    for name in ("procedures.yml", "remediator.yml"):
        out = subprocess.run([*VIGIL, "check-config", str(DEPLOY_DIR / name)], capture_output=True,
                             text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        assert "valid remediator configuration" in out.stdout
    config = load_config(DEPLOY_DIR / "remediator.yml")
    alertnames = {m.value for p in config.procedures for m in p.match if m.name == "alertname"}
    assert {"TargetMemoryExhaustionPredicted", "TargetDiskFillPredicted", "TargetDownstreamErrors",
            "TargetConfigDrift", "CorsMethodBlocked", "TargetDbPoolExhausted"} <= alertnames


def test_check_config_rejects_a_broken_procedures_file(tmp_path: Path) -> None:
    bad = tmp_path / "procedures.yml"
    bad.write_text(yaml.safe_dump({"procedures": [procedure("p", match=["nope"])]}))
    out = subprocess.run([*VIGIL, "check-config", str(bad)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 1
    assert "procedures[0].match[0]" in out.stderr


def test_simulate_shows_procedure_and_params_without_running(tmp_path: Path) -> None:
    payload = notification(
        alert("TargetMemoryExhaustionPredicted", "ab", labels={"instance": "127.0.0.1:8080"}),
        alert("TargetConfigDrift", "cd", labels={"instance": "127.0.0.1:8080`id`"}),
        alert("EnvInvalid", "ef"))
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))
    out = subprocess.run([*VIGIL, "remediator", "simulate", str(path), "--output", "json"],
                         capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result[0]["procedure"] == "restart-leaking-target" and result[0]["decision"] == "run"
    assert result[0]["params"]["instance"] == "127.0.0.1:8080"
    assert result[0]["steps"][0]["url"] == "http://127.0.0.1:8080/admin/restart"
    assert result[1]["decision"].startswith("refused: parameter 'instance'")
    assert result[2]["decision"] == "no procedure matches: escalate"
    text = subprocess.run([*VIGIL, "remediator", "simulate", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert "step restart:" in text.stdout
    path.write_text('{"version": "4"')
    bad = subprocess.run([*VIGIL, "remediator", "simulate", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "invalid JSON" in bad.stderr


async def test_admin_api_lists_filters_and_documents(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")], paused=True))
    await post(client, notification(alert("fixAlert", "a1"), alert("Other", "b2")))
    resp = await client.get("/api/v1/incidents", headers=ADMIN_AUTH)
    assert [i["fingerprint"] for i in (await resp.json())["incidents"]] == ["b2", "a1"]
    resp = await client.get("/api/v1/incidents?state=escalated", headers=ADMIN_AUTH)
    assert [i["alertname"] for i in (await resp.json())["incidents"]] == ["Other"]
    resp = await client.get("/api/v1/incidents?procedure=fix&limit=1", headers=ADMIN_AUTH)
    assert [i["fingerprint"] for i in (await resp.json())["incidents"]] == ["a1"]
    resp = await client.get("/api/v1/incidents?state=bogus", headers=ADMIN_AUTH)
    assert resp.status == 400 and "state: expected one of" in (await resp.json())["error"]
    resp = await client.get("/api/v1/incidents/12345", headers=ADMIN_AUTH)
    assert resp.status == 404
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.") and "/api/v1/incidents/{id}/approve" in doc["paths"]


async def test_admin_api_disabled_without_credentials(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config(admin={}))
    assert (await client.get("/api/v1/incidents")).status == 403


def _cert(tmp_path: Path, name: str, ca: tuple[Path, Path] | None = None) -> tuple[Path, Path]:
    key, crt = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    if ca is None:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    else:
        csr = tmp_path / f"{name}.csr"
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                        "-keyout", str(key), "-out", str(csr)], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey",
                        str(ca[0]), "-CAcreateserial", "-days", "1", "-out", str(crt)],
                       check=True, capture_output=True)
    return key, crt


async def test_tls_with_client_certificates(make_config: Any, aiohttp_server: Any,
                                            tmp_path: Path) -> None:
    from vigil.remediator.app import create_app

    server_key, server_crt = _cert(tmp_path, "server")
    ca = _cert(tmp_path, "clients-ca")
    client_key, client_crt = _cert(tmp_path, "client", ca)
    config = make_config(tls={"cert_file": str(server_crt), "key_file": str(server_key),
                              "client_ca_file": str(ca[1])})
    server = await aiohttp_server(create_app(config), ssl=ssl_context(config))
    url = f"https://127.0.0.1:{server.port}/api/v1/alerts"
    trust = ssl.create_default_context(cafile=str(server_crt))
    body = json.dumps(notification(alert()))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):  # no client certificate: handshake refused
            async with session.post(url, data=body, headers=headers, ssl=trust) as resp:
                await resp.read()
        trust.load_cert_chain(str(client_crt), str(client_key))
        async with session.post(url, data=body, headers=headers, ssl=trust) as resp:
            assert resp.status == 200


def test_validation_is_anchored_at_the_very_end() -> None:
    """`$` also matches before a final newline: every validator must refuse one."""
    from vigil.remediator.payload import PayloadError, parse_time

    assert parse_time("2026-01-01T00:00:00Z", "t").year == 2026
    for bad in ("2026-01-01T00:00:00Z\n", "2026-01-01T00:00:00+01:00\n"):
        with pytest.raises(PayloadError, match="invalid RFC 3339"):
            parse_time(bad, "t")
    # a parameter pattern written with `$`, as users do: the newline still does not pass
    config = parse_config({"procedures": [procedure("p", match=['alertname="P"'], params={
        "host": {"label": "instance", "pattern": r"^[a-z]+$"}})]})
    ok = match_alert(config, {"labels": {"alertname": "P", "instance": "web"}, "fingerprint": "ab"})
    assert ok.params["host"] == "web" and not ok.refused
    bad = match_alert(config, {"labels": {"alertname": "P", "instance": "web\n"}, "fingerprint": "ab"})
    assert bad.refused.startswith("parameter 'host'")
    assert Matcher(name="x", op="=~", value="a$").matches({"x": "a\n"}) is False
    with pytest.raises(ConfigError) as err:
        parse_config({"procedures": [procedure("p\n")]}, "r.yml")
    assert err.value.path.startswith("procedures[0].name")
