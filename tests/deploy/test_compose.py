"""docker-compose.yml and the Dockerfile, checked structurally (no Docker engine here).

What a `docker compose config` plus a human review would catch: every mounted path and
config file exists, every secret is declared and file-backed, every service listens on
localhost by default on the port Prometheus, Grafana and Alertmanager expect, and every
placeholder a service's config uses is rendered for it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.helpers import DEPLOY_DIR, REPO_ROOT, require_shipped_configs

COMPOSE_FILE = DEPLOY_DIR / "docker-compose.yml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VIGIL_SERVICES = ("demo-target", "exporter", "forecaster", "remediator")
# The whole stack of the issue: demo target, Vigil's three services, PostgreSQL, Prometheus,
# Alertmanager and Grafana.
EXPECTED = {"demo-target", "exporter", "forecaster", "remediator", "postgres", "prometheus",
            "alertmanager", "grafana"}
# port each long-running service listens on (deploy/prometheus.yml's targets)
PORTS = {"demo-target": 8080, "exporter": 9115, "forecaster": 9116, "remediator": 9095,
         "prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "postgres": 5432}
BIND = "${VIGIL_BIND_ADDRESS:-127.0.0.1}"
DEFAULT_SECRETS = "${VIGIL_SECRETS_DIR:-./secrets}"
_VAR = re.compile(r"\$\{([A-Z_]+)(:-([^}]*))?\}")


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command if isinstance(command, list) else command.split()


def _flag(service: dict[str, Any], name: str) -> str | None:
    for arg in _command(service):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _default(value: str) -> str:
    """Apply compose's ${VAR:-default} interpolation with every variable unset."""
    return _VAR.sub(lambda m: m.group(3) or "", value)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> host path (relative to deploy/) or volume name."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        out[target] = source
    return out


def _host_path_for(service: dict[str, Any], container_path: str) -> str | None:
    """The host source of a container path through the service's mounts (longest prefix)."""
    best = None
    for target, source in _mounts(service).items():
        inside = container_path == target or container_path.startswith(target.rstrip("/") + "/")
        if inside and (best is None or len(target) > len(best[0])):
            best = (target, source)
    if best is None:
        return None
    target, source = best
    return source + container_path[len(target):]


def test_the_whole_stack_is_there() -> None:
    assert EXPECTED <= set(SERVICES)


def test_every_service_listens_on_localhost_by_default() -> None:
    for name, port in PORTS.items():
        service = SERVICES[name]
        assert service.get("network_mode") == "host", name
        assert "ports" not in service, f"{name}: host networking publishes no ports"
        if name == "grafana":
            env = service["environment"]
            assert env["GF_SERVER_HTTP_ADDR"] == BIND and env["GF_SERVER_HTTP_PORT"] == str(port)
        elif name == "postgres":
            command = " ".join(_command(service))
            assert f"listen_addresses={BIND}" in command
            assert _default(command).endswith(f"port={port}")
        else:
            assert _flag(service, "--web.listen-address") == f"{BIND}:{port}", name


def test_ports_agree_with_prometheus_grafana_and_alertmanager() -> None:
    prom = yaml.safe_load((DEPLOY_DIR / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}
    for job, service in (("demo", "demo-target"), ("vigil-exporter", "exporter"),
                         ("vigil-forecaster", "forecaster"), ("vigil-remediator", "remediator"),
                         ("prometheus", "prometheus"), ("alertmanager", "alertmanager")):
        assert targets[job] == f"127.0.0.1:{PORTS[service]}", job
    am_target = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert am_target == f"127.0.0.1:{PORTS['alertmanager']}"
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["VIGIL_PROMETHEUS_URL"] == f"http://127.0.0.1:{PORTS['prometheus']}"
    assert _default(grafana["VIGIL_INCIDENT_DB_HOST"]) == f"127.0.0.1:{PORTS['postgres']}"
    forecaster_prom = _flag(SERVICES["forecaster"], "--prometheus.url")
    assert forecaster_prom == f"http://127.0.0.1:{PORTS['prometheus']}"


def test_shipped_configs_address_the_compose_ports() -> None:
    require_shipped_configs()
    alertmanager = yaml.safe_load((DEPLOY_DIR / "alertmanager.yml").read_text())
    urls = [w["url"] for r in alertmanager["receivers"] for w in r.get("webhook_configs", [])]
    assert f"http://127.0.0.1:{PORTS['remediator']}/api/v1/alerts" in urls
    remediator = yaml.safe_load((DEPLOY_DIR / "remediator.yml").read_text())
    assert remediator["prometheus_url"] == f"http://127.0.0.1:{PORTS['prometheus']}"
    assert remediator["alertmanager_url"] == f"http://127.0.0.1:{PORTS['alertmanager']}"
    exporter = yaml.safe_load((DEPLOY_DIR / "exporter.yml").read_text())
    assert exporter["targets"][0]["base_url"] == f"http://127.0.0.1:{PORTS['demo-target']}"


def test_vigil_healthchecks_point_at_each_service_port() -> None:
    for name in VIGIL_SERVICES:
        url = SERVICES[name]["environment"]["VIGIL_HEALTH_URL"]
        assert url == f"http://127.0.0.1:{PORTS[name]}/-/healthy", name
    for name in ("prometheus", "alertmanager", "grafana", "postgres"):
        test = " ".join(SERVICES[name]["healthcheck"]["test"])
        assert str(PORTS[name]) in _default(test), name


def test_every_bind_mount_source_exists() -> None:
    volumes = set(COMPOSE.get("volumes", {}))
    for name, service in SERVICES.items():
        for target, source in _mounts(service).items():
            if source.startswith((".", "/")):
                assert (DEPLOY_DIR / source).exists(), f"{name}: {source} -> {target}"
            else:
                assert source in volumes, f"{name}: volume {source} not declared"


def test_every_config_file_flag_resolves_to_a_shipped_file() -> None:
    require_shipped_configs()
    render = SERVICES["configs"]
    render_src, render_dst = _command(render)[1:3]
    assert _host_path_for(render, render_src) == "./"
    assert _mounts(render)[render_dst] == "vigil-config"
    script = _host_path_for(render, _command(render)[0])
    assert script is not None and (DEPLOY_DIR / script).exists()
    rendered = set(re.findall(r"^render (\S+)", (DEPLOY_DIR / "systemd/render-configs.sh")
                              .read_text(), re.MULTILINE))
    for name, service in SERVICES.items():
        path = _flag(service, "--config.file")
        if path is None:
            continue
        source = _host_path_for(service, path)
        assert source is not None, f"{name}: {path} is not mounted"
        if source.split("/")[0] == "vigil-config":
            file_name = path.rsplit("/", 1)[1]
            assert file_name in rendered, f"{name}: {file_name} is not rendered"
            assert (DEPLOY_DIR / file_name).exists(), f"{name}: deploy/{file_name} missing"
            assert service["depends_on"]["configs"]["condition"] == (
                "service_completed_successfully")
        else:
            assert (DEPLOY_DIR / source).is_file(), f"{name}: {source}"


def test_secrets_are_files_and_every_use_is_declared() -> None:
    declared = COMPOSE["secrets"]
    for secret, spec in declared.items():
        assert spec == {"file": f"{DEFAULT_SECRETS}/{secret}"}, secret
    for name, service in SERVICES.items():
        used = set(service.get("secrets", []))
        assert used <= set(declared), name
        text = yaml.safe_dump({k: service.get(k) for k in ("environment", "entrypoint",
                                                           "command")})
        if name == "configs":  # it writes secret paths into the configs, it reads none
            continue
        referenced = set(re.findall(r"/run/secrets/([a-z0-9-]+)", text))
        assert referenced <= used, f"{name} reads {referenced - used} without mounting them"
        env = service.get("environment", {})
        for key, value in env.items():
            assert not re.search(r"(PASSWORD|TOKEN|SECRET)$", key) or str(value).startswith(
                "/run/secrets/"), f"{name}: {key} must point at a secret file"


def test_services_mount_the_secrets_their_configs_read() -> None:
    require_shipped_configs()
    config_of = {"exporter": "exporter.yml", "remediator": "remediator.yml",
                 "alertmanager": "alertmanager.yml", "forecaster": "forecasts.yml"}
    for name, file_name in config_of.items():
        text = (DEPLOY_DIR / file_name).read_text()
        if file_name == "remediator.yml":
            text += (DEPLOY_DIR / "procedures.yml").read_text()
        needed = set(re.findall(r"\$\{VIGIL_SECRETS_DIR\}/([A-Za-z0-9_.-]+)", text))
        if "source: directory" in text:  # the env check reads the whole directory
            needed |= set(re.findall(r"key: ([a-z0-9-]+)", text))
        if name == "remediator":
            needed.add("remediator-database-url")
        mounted = set(SERVICES[name].get("secrets", []))
        assert needed <= mounted, f"{name} reads {sorted(needed - mounted)} but lacks them"


def test_vigil_services_run_hardened() -> None:
    for name in (*VIGIL_SERVICES, "configs"):
        service = SERVICES[name]
        assert service["user"] == "10001:10001" and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = _default(service["image"])
        assert ":" in image and not image.endswith(":latest"), name


def test_depends_on_names_existing_services() -> None:
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"


def test_grafana_provisioning_mounts_match_the_provider() -> None:
    provider = yaml.safe_load((REPO_ROOT / "grafana/provisioning/dashboards/vigil.yml")
                              .read_text())["providers"][0]
    mounts = _mounts(SERVICES["grafana"])
    assert mounts[provider["options"]["path"]] == "../grafana/dashboards"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY_DIR / str(_host_path_for(SERVICES["grafana"], home))).is_file()
    datasources = (REPO_ROOT / "grafana/provisioning/datasources/vigil.yml").read_text()
    env = SERVICES["grafana"]["environment"]
    for variable in set(re.findall(r"\$\{(VIGIL_[A-Z_]+)\}", datasources)):
        assert variable in env, f"grafana lacks {variable} used by the datasource provisioning"


# --- Dockerfile ---------------------------------------------------------------------------------

DOCKERFILE = (DEPLOY_DIR / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    instructions = _instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2 and all(" AS " in s.upper() for s in stages)
    final = instructions[max(i for i, (w, _) in enumerate(instructions) if w == "FROM"):]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(word == "HEALTHCHECK" for word, _ in final)
    assert any(word == "COPY" and "--from=build" in rest for word, _ in final for rest in [_])


def test_dockerfile_copies_only_existing_paths() -> None:
    for word, rest in _instructions():
        if word == "COPY" and "--from=" not in rest:
            for source in rest.split()[:-1]:
                assert (REPO_ROOT / source).exists(), source


def test_dockerfile_creates_the_volume_mount_points_for_the_user() -> None:
    for name in VIGIL_SERVICES:
        for target, source in _mounts(SERVICES[name]).items():
            if not source.startswith((".", "/")) and target.startswith("/var/lib/vigil"):
                assert target in DOCKERFILE, f"{target} must exist in the image, owned by vigil"


def test_demo_target_entrypoint_reads_its_tokens_from_the_secret_files(tmp_path: Path) -> None:
    # Run the entrypoint's shell line for real, as compose would after unescaping $$.
    service = SERVICES["demo-target"]
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "demo-admin-token").write_text("admin-token-value")
    (secrets / "demo-api-key").write_text("api-key-value")
    argv = [a.replace("$$", "$").replace("/run/secrets/", f"{secrets}/")
            for a in service["entrypoint"]]
    assert set(service["secrets"]) == {"demo-admin-token", "demo-api-key"}
    result = subprocess.run([*argv, "env"], capture_output=True, text=True, timeout=30,
                            check=True)
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["DEMO_ADMIN_TOKEN"] == "admin-token-value"
    assert env["DEMO_API_KEY"] == "api-key-value"


def test_dockerfile_healthcheck_command_works(demo_target: Any) -> None:
    # Run the HEALTHCHECK's command against a real service and against a closed port.
    import json
    import sys

    from vigil.procs import free_port

    spec = next(rest for word, rest in _instructions() if word == "HEALTHCHECK")
    argv = json.loads(spec.split("CMD", 1)[1].strip())
    argv[0] = sys.executable
    ok = subprocess.run(argv, env={"VIGIL_HEALTH_URL": f"{demo_target.url}/-/healthy"},
                        capture_output=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(argv, env={"VIGIL_HEALTH_URL": f"http://127.0.0.1:{free_port()}/"},
                          capture_output=True, timeout=30, check=False)
    assert down.returncode != 0
