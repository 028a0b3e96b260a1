"""Kubernetes manifests: schema-valid core kinds, consistent references, generated files fresh.

Core kinds are validated with kubernetes-validate's bundled OpenAPI schemas (offline, strict:
unknown fields fail). The Prometheus Operator's kinds have no bundled schema: they are checked
structurally, and the PrometheusRule's rules go through `promtool check rules`.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import DEPLOY_DIR, require_shipped_configs
from tests.harness import require_binary

K8S_DIR = DEPLOY_DIR / "kubernetes"
BASE = K8S_DIR / "base"
KUBERNETES_VERSION = "1.30.0"
CORE_KINDS = {"Namespace", "ServiceAccount", "Deployment", "StatefulSet", "Service",
              "PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Secret"}
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("vigil_k8s_generate", K8S_DIR / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Loader(yaml.SafeLoader):
    """kubectl prints `matchType: =` unquoted; YAML 1.1 resolvers read `=` as a special tag."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: node.value)


def _build() -> list[dict[str, Any]]:
    """The kustomized base: `kubectl kustomize` when kubectl exists, else the same by hand."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.load_all(result.stdout, Loader=_Loader) if d]
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((BASE / name).read_text()) if d]
    for generator in kustomization["configMapGenerator"]:
        data = {Path(f).name: (BASE / f).read_text() for f in generator["files"]}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"]}, "data": data})
    for doc in docs:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    require_shipped_configs()
    return _build()


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def test_generated_files_are_up_to_date() -> None:
    require_shipped_configs()
    generator = _generator()
    stale = [str(p) for p, text in generator.generated_files().items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python deploy/kubernetes/generate.py`: stale {stale}"


def test_core_kinds_pass_strict_schema_validation(manifests: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in manifests}
    assert {"Deployment", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy",
            "ConfigMap", "Namespace"} <= kinds
    assert kinds <= CORE_KINDS | OPERATOR_KINDS, kinds - CORE_KINDS - OPERATOR_KINDS
    template = yaml.safe_load((BASE / "secret-template.yaml").read_text())
    for doc in [d for d in manifests if d["kind"] in CORE_KINDS] + [template]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_rejects_an_unknown_field(manifests: list[dict[str, Any]]) -> None:
    deployment = dict(_by_kind(manifests, "Deployment")["vigil-remediator"])
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_workloads_have_probes_resources_and_a_restricted_security_context(
        manifests: list[dict[str, Any]]) -> None:
    for workload in _workloads(manifests):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy", name
            assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready", name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            ports = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, name


def test_remediator_runs_two_replicas_on_postgresql(manifests: list[dict[str, Any]]) -> None:
    remediator = _by_kind(manifests, "Deployment")["vigil-remediator"]
    assert remediator["spec"]["replicas"] == 2
    config = _by_kind(manifests, "ConfigMap")
    config_map = next(c for n, c in config.items() if n.startswith("vigil-config"))
    remediator_config = yaml.safe_load(config_map["data"]["remediator.yml"])
    assert remediator_config["database_url_file"] == "/etc/vigil/secrets/remediator-database-url"
    assert "database_url" not in remediator_config
    pdb = _by_kind(manifests, "PodDisruptionBudget")["vigil-remediator"]
    assert pdb["spec"]["minAvailable"] == 1


def test_forecaster_shards_come_from_the_statefulset_ordinal(
        manifests: list[dict[str, Any]]) -> None:
    forecaster = _by_kind(manifests, "StatefulSet")["vigil-forecaster"]
    container = forecaster["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["VIGIL_FORECASTER_SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']")
    assert int(env["VIGIL_FORECASTER_SHARDS"]["value"]) == forecaster["spec"]["replicas"]
    assert "--shard=$(VIGIL_FORECASTER_SHARD)/$(VIGIL_FORECASTER_SHARDS)" in container["command"]
    # the forecaster accepts that flag
    from vigil.forecaster.service import parse_shard

    assert parse_shard("1/2") == (1, 2)


def test_config_files_and_secret_keys_referenced_exist(manifests: list[dict[str, Any]]) -> None:
    config_map = next(c for n, c in _by_kind(manifests, "ConfigMap").items()
                      if n.startswith("vigil-config"))
    secret_keys = set(yaml.safe_load((BASE / "secret-template.yaml").read_text())["stringData"])
    for workload in _workloads(manifests):
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for arg in container["command"]:
                if arg.startswith("--config.file="):
                    name = arg.split("=", 1)[1].removeprefix("/etc/vigil/config/")
                    assert name in config_map["data"], arg
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "vigil-secrets" and ref["key"] in secret_keys
        for volume in pod["volumes"]:
            if "configMap" in volume:
                assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    # every secret file a component's config reads is a key it mounts from the Secret
    mounted: dict[str, set[str]] = {}
    for workload in _workloads(manifests):
        for volume in workload["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                keys = {i["key"] for i in volume["secret"].get("items", [])} or secret_keys
                mounted[workload["metadata"]["name"]] = keys
    reader = {"exporter.yml": "vigil-exporter", "remediator.yml": "vigil-remediator",
              "procedures.yml": "vigil-remediator", "forecasts.yml": "vigil-forecaster"}
    for file_name, text in config_map["data"].items():
        text = re.sub(r"(^|\s)#.*", "", text)
        for key in re.findall(r"/etc/vigil/secrets/([A-Za-z0-9_.-]+)", text):
            assert key in mounted.get(reader[file_name], set()), (file_name, key)
        if "source: directory" in text:
            needed = set(re.findall(r"key: ([a-z0-9-]+)", text))
            assert needed <= mounted.get(reader[file_name], set()), file_name
    # every secret file a config reads is a key of the Secret
    for text in config_map["data"].values():
        text = re.sub(r"(^|\s)#.*", "", text)  # commented-out examples are not read
        for key in re.findall(r"/etc/vigil/secrets/([A-Za-z0-9_.-]+)", text):
            assert key in secret_keys, key
        assert "${VIGIL_" not in text, "unrendered placeholder"


def test_services_and_monitors_agree(manifests: list[dict[str, Any]]) -> None:
    services = _by_kind(manifests, "Service")
    monitor = _by_kind(manifests, "ServiceMonitor")["vigil"]
    assert monitor["spec"]["jobLabel"] == "vigil/job"
    monitored_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    jobs = {}
    for name, service in services.items():
        job = service["metadata"]["labels"].get("vigil/job")
        if job:
            jobs[job] = name
            assert {p["name"] for p in service["spec"]["ports"]} & monitored_ports, name
    # the scrape jobs of the contract (docs: ALERTS.md / deploy/prometheus.yml)
    assert set(jobs) == {"demo", "vigil-exporter", "vigil-forecaster", "vigil-remediator"}
    pods = {w["metadata"]["name"]: w["spec"]["template"]["metadata"]["labels"]
            for w in _workloads(manifests)}
    for name, service in services.items():
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods.values()), name


def test_alertmanager_config_routes_to_the_remediator(manifests: list[dict[str, Any]]) -> None:
    config = _by_kind(manifests, "AlertmanagerConfig")["vigil"]["spec"]
    route = config["route"]["routes"][0]
    assert route["receiver"] == "vigil-remediator" and route["continue"] is True
    assert route["matchers"] == [{"name": "remediation", "value": "auto", "matchType": "="}]
    assert route["groupBy"] == ["..."]
    receiver = next(r for r in config["receivers"] if r["name"] == "vigil-remediator")
    webhook = receiver["webhookConfigs"][0]
    assert webhook["sendResolved"] is True
    service = _by_kind(manifests, "Service")["vigil-remediator"]
    port = service["spec"]["ports"][0]["port"]
    assert webhook["url"] == f"http://vigil-remediator.vigil.svc:{port}/api/v1/alerts"
    key = webhook["httpConfig"]["authorization"]["credentials"]["key"]
    assert key in yaml.safe_load((BASE / "secret-template.yaml").read_text())["stringData"]
    remediator = yaml.safe_load((BASE / "config/remediator.yml").read_text())
    assert remediator["webhook"]["bearer_token_file"].endswith(f"/{key}")


def test_prometheus_rule_passes_promtool(manifests: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    rule = _by_kind(manifests, "PrometheusRule")["vigil"]
    groups = rule["spec"]["groups"]
    assert len(groups) == sum(
        len(yaml.safe_load(p.read_text())["groups"])
        for p in (DEPLOY_DIR.parent / "rules").glob("*.rules.yml"))
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_network_policies_allow_what_the_loop_needs(manifests: list[dict[str, Any]]) -> None:
    policies = _by_kind(manifests, "NetworkPolicy")
    deny = policies["vigil-default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    allowed = {p["port"] for rule in policies["vigil-allow-monitoring"]["spec"]["ingress"]
               for p in rule["ports"]}
    container_ports = {p["containerPort"] for w in _workloads(manifests)
                       for c in w["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert container_ports <= allowed
