"""Remediator configuration: settings plus procedures, validated by `vigil check-config`.

One file has `procedures:` at the top level, either inline (a list) or as a path to a
procedures file (relative to the config file). A file holding only `procedures:` is also a
valid config: every setting takes its default. Secrets are only ever file paths here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from vigil.config import ConfigError, StrictModel, load_yaml, parse_model

__all__ = [
    "TEMPLATE_RE",
    "IntelligenceSettings",
    "Matcher",
    "ParamSpec",
    "Procedure",
    "RemediatorConfig",
    "Step",
    "load_config",
    "parse_duration",
    "template_names",
]

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
TEMPLATE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_PARAMS = ("alertname", "fingerprint")


def parse_duration(value: Any) -> float:
    """Seconds from `500ms`, `30s`, `5m`, `1h`, `1d` or a plain number of seconds."""
    if isinstance(value, bool):  # pydantic turns ValueError (not TypeError) into a config error
        raise ValueError("expected a duration like 30s or 5m")  # noqa: TRY004
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value.strip())
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
    raise ValueError("expected a duration like 30s, 5m or 1h")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def template_names(text: str) -> list[str]:
    return TEMPLATE_RE.findall(text)


_MATCHER_RE = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$')


class Matcher(StrictModel):
    """A label matcher as Alertmanager spells it: name, op (= != =~ !~), value."""

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


def _parse_matcher(value: Any) -> Any:
    if isinstance(value, str):
        m = _MATCHER_RE.fullmatch(value)
        if not m:
            raise ValueError('expected a matcher like alertname="Foo" (ops: = != =~ !~)')
        name, op, raw = m.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        return {"name": name, "op": op, "value": raw}
    return value


class ParamSpec(StrictModel):
    """Where a parameter comes from and the pattern its value must fully match."""

    label: str | None = None
    annotation: str | None = None
    pattern: str
    default: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ParamSpec:
        if (self.label is None) == (self.annotation is None):
            raise ValueError("set exactly one of 'label' or 'annotation'")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"invalid pattern: {exc}") from None
        return self


class _StepBase(StrictModel):
    name: str = ""
    timeout: Duration = 30.0


class HttpStep(_StepBase):
    action: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    credentials: str | None = None
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff: Duration = 0.5
    expect_status: list[int] = Field(default_factory=list)


class CommandStep(_StepBase):
    action: Literal["command"]
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    env_allow: list[str] = Field(default_factory=list)
    cwd: str | None = None


class SqlStep(_StepBase):
    action: Literal["sql"]
    database: str
    statement: str


class SystemdRestartStep(_StepBase):
    action: Literal["systemd_restart"]
    unit: str
    user: bool = False


class KubernetesRolloutRestartStep(_StepBase):
    action: Literal["kubernetes_rollout_restart"]
    resource: str
    namespace: str | None = None
    context: str | None = None
    wait: bool = False


class DockerRestartStep(_StepBase):
    action: Literal["docker_restart"]
    container: str
    stop_timeout: int = Field(default=10, ge=0)


class ConfigRestoreStep(_StepBase):
    action: Literal["config_restore"]
    baseline: str
    live: str
    reload_url: str | None = None
    reload_method: Literal["POST", "PUT", "GET"] = "POST"
    credentials: str | None = None


class CircuitBreakerStep(_StepBase):
    action: Literal["circuit_breaker"]
    url: str
    state: Literal["open", "closed"]
    credentials: str | None = None
    # with state open: the target half-opens after this long and closes itself on a success
    retry_after: Duration | None = None


class SilenceStep(_StepBase):
    action: Literal["silence"]
    duration: Duration = 600.0
    matchers: list[Annotated[Matcher, BeforeValidator(_parse_matcher)]] = Field(default_factory=list)
    comment: str = "vigil-remediator: remediation in progress"


class WaitStep(_StepBase):
    action: Literal["wait"]
    seconds: Duration


Step = Annotated[
    HttpStep | CommandStep | SqlStep | SystemdRestartStep | KubernetesRolloutRestartStep
    | DockerRestartStep | ConfigRestoreStep | CircuitBreakerStep | SilenceStep | WaitStep,
    Field(discriminator="action"),
]


def _step_bound(step: Any) -> float:
    """The longest one step can take: its timeout per try (an http step retries), a wait."""
    if isinstance(step, WaitStep):
        return step.seconds
    if isinstance(step, HttpStep):
        return step.timeout * (step.retries + 1) + step.retry_backoff * (2 ** step.retries)
    return float(step.timeout)


class Verification(StrictModel):
    """A PromQL query that must return a non-empty result (the condition holds) in time."""

    query: str
    timeout: Duration = 120.0
    interval: Duration = 2.0
    consecutive: int = Field(default=1, ge=1)


class BlastRadius(StrictModel):
    """Fleet-wide limits on one procedure (counted in the shared store, over all replicas):
    targets remediating at once, and targets started per hour. An incident past either is
    escalated instead of queued, and one escalation per hour reports how many were held."""

    max_targets: int | None = Field(default=None, ge=1)
    max_per_hour: int | None = Field(default=None, ge=1)


class Procedure(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    description: str = ""
    match: list[Annotated[Matcher, BeforeValidator(_parse_matcher)]] = Field(min_length=1)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    target: str = ""
    steps: list[Step] = Field(min_length=1)
    rollback: list[Step] = Field(default_factory=list)
    verify: Verification | None = None
    dry_run: bool = False
    idempotent: bool = False
    requires_approval: bool = False
    cooldown: Duration = 300.0
    max_attempts: int = Field(default=3, ge=1)
    attempts_window: Duration = 3600.0
    max_concurrent: int = Field(default=1, ge=1)
    # how long an incident may stay `remediating` before it counts as stuck
    # (vigil_remediation_stuck_incidents); default: the steps', rollback's and verification's
    # own time limits added up, plus one minute
    time_bound: Duration | None = None
    blast_radius: BlastRadius | None = None

    def time_bound_seconds(self) -> float:
        if self.time_bound is not None:
            return self.time_bound
        return (sum(_step_bound(s) for s in [*self.steps, *self.rollback])
                + (self.verify.timeout + self.verify.interval if self.verify else 0.0) + 60.0)

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"parameter name {name!r} is not an identifier")
            if name in BUILTIN_PARAMS:
                raise ValueError(f"parameter name {name!r} is reserved")
        return value

    def cooldown_key(self, params: dict[str, str]) -> str:
        from vigil.remediator.templating import render

        if self.target:
            return f"{self.name}:{render(self.target, params)}"
        return self.name + "".join(f":{k}={params[k]}" for k in sorted(self.params))


class BasicAuth(StrictModel):
    username: str
    password_file: str


class WebhookSettings(StrictModel):
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None
    max_body_bytes: int = Field(default=1 << 20, ge=1024)


class AdminSettings(StrictModel):
    bearer_token_file: str | None = None
    basic_auth: BasicAuth | None = None


class TlsSettings(StrictModel):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class Credential(StrictModel):
    bearer_token_file: str


class DatabaseRef(StrictModel):
    url: str | None = None
    url_file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> DatabaseRef:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("set exactly one of 'url' or 'url_file'")
        return self


class Escalation(StrictModel):
    url: str
    credentials: str | None = None
    timeout: Duration = 10.0


class Binaries(StrictModel):
    systemctl: str = "systemctl"
    kubectl: str = "kubectl"
    docker: str = "docker"


# user-facing effects: the cause when nothing more specific fires
DEFAULT_SYMPTOM_ALERTS = r"TargetErrorRateHigh|TargetLatencyDegraded"
# aggregates and derivatives of other signals (budgets, forecasts, scores, Vigil itself, and
# the exporter's per-variable / per-schema verdicts, which are 0 when any finding of theirs
# is: a specific finding's alert beside them names the cause)
DEFAULT_DERIVED_ALERTS = (r"ErrorBudget.*|SLO.*|Forecast.*|TargetTrafficAnomaly|ConfigScoreDropping|"
                          r"EnvInvalid|SchemaInconsistent|Vigil.*")


class EvidenceLink(StrictModel):
    """A finding check (or forecast name) regex and the alert names whose cause it explains."""

    match: str
    explains: str

    @model_validator(mode="after")
    def _regexes_compile(self) -> EvidenceLink:
        for value in (self.match, self.explains):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class ImpactSettings(StrictModel):
    """PromQL per-second rates for an incident's impact; ${job}/${instance}/${service}/${range}
    are filled in, and each rate is multiplied by how long the incident was open."""

    failed_requests: str = 'sum(rate(http_requests_total{job="${job}",status=~"5.."}[${range}]))'
    total_requests: str = 'sum(rate(http_requests_total{job="${job}"}[${range}]))'
    min_range: Duration = 60.0  # a shorter incident is measured by the rate over this range
    slo_objective: float = Field(default=0.99, gt=0, lt=1)
    slo_period: Duration = 30 * 86400.0

    @field_validator("failed_requests", "total_requests")
    @classmethod
    def _known_templates(cls, value: str) -> str:
        for name in template_names(value):
            if name not in ("job", "instance", "service", "range"):
                raise ValueError(f"template ${{{name}}} is not one of job, instance, service, range")
        return value


class IntelligenceSettings(StrictModel):
    """Correlation, root-cause ranking, similar incidents and impact (docs/incidents.md)."""

    enabled: bool = True
    window: Duration = 300.0
    service_labels: list[str] = Field(default_factory=lambda: ["service", "target", "job"])
    shared_labels: list[str] = Field(default_factory=lambda: ["instance"])
    dependencies: dict[str, list[str]] = Field(default_factory=dict)
    roles: dict[str, str] = Field(default_factory=dict)
    symptom_alerts: str = DEFAULT_SYMPTOM_ALERTS
    derived_alerts: str = DEFAULT_DERIVED_ALERTS
    symptom_hold: Duration = 10.0
    reevaluate_after: Duration = 30.0
    evidence_lookback: Duration = 600.0
    finding_links: list[EvidenceLink] = Field(default_factory=lambda: [
        EvidenceLink(match="cors.*", explains="CorsMethodBlocked"),
        EvidenceLink(match="config.*|drift.*", explains="TargetConfigDrift"),
        EvidenceLink(match="env.*|secret.*", explains="EnvInvalid|SecretPlaceholder"),
        EvidenceLink(match="schema.*|code.*", explains="Schema.*|CodeReferencesMissingTable"),
    ])
    anomaly_links: list[EvidenceLink] = Field(default_factory=lambda: [
        EvidenceLink(match="memory.*", explains="TargetMemoryExhaustionPredicted"),
        EvidenceLink(match="disk.*", explains="TargetDiskFillPredicted"),
    ])
    # alert -> alert: `match` names a cause alert, `explains` the alerts it causes on the same
    # service (a drifted live config explains the CORS and header findings that follow it)
    alert_links: list[EvidenceLink] = Field(default_factory=lambda: [
        EvidenceLink(match="TargetConfigDrift",
                     explains="CorsMethodBlocked|CorsCredentialsUnsafeOrigin|SecurityHeaderMissing"),
    ])
    flag_after_failures: int = Field(default=3, ge=1)
    max_group_size: int = Field(default=50, ge=2, le=1000)
    impact: ImpactSettings = ImpactSettings()

    @field_validator("symptom_alerts", "derived_alerts")
    @classmethod
    def _symptoms_compile(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _dependencies_known(self) -> IntelligenceSettings:
        for service, deps in self.dependencies.items():
            if service in deps:
                raise ValueError(f"dependencies.{service}: a service cannot depend on itself")
        return self


class RemediatorConfig(StrictModel):
    database_url: str | None = None
    database_url_file: str | None = None
    replica_id: str = ""
    webhook: WebhookSettings = WebhookSettings()
    admin: AdminSettings = AdminSettings()
    tls: TlsSettings | None = None
    listen_address: str = "127.0.0.1:9095"
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    escalation: Escalation | None = None
    dry_run: bool = False
    paused: bool = False
    max_concurrent: int = Field(default=4, ge=1)
    stale_after: Duration = 60.0
    # concurrent ingest transactions (group commits); default 2 on PostgreSQL, 1 on SQLite
    store_writers: int | None = Field(default=None, ge=1, le=16)
    credentials: dict[str, Credential] = Field(default_factory=dict)
    databases: dict[str, DatabaseRef] = Field(default_factory=dict)
    binaries: Binaries = Binaries()
    # trusted values from configuration, usable as ${name} in procedures (e.g. a state dir)
    constants: dict[str, str] = Field(default_factory=dict)
    procedures: list[Procedure] = Field(default_factory=list)
    intelligence: IntelligenceSettings = IntelligenceSettings()
    # where relative paths resolve from (the config file's folder); set by load_config
    base_dir: str = "."
    # a procedures-only file: credentials and databases are the main config's to declare
    procedures_only: bool = False

    @model_validator(mode="after")
    def _cross_references(self) -> RemediatorConfig:
        names: set[str] = set()
        for name in self.constants:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in BUILTIN_PARAMS:
                raise ValueError(f"constants.{name}: not an identifier, or reserved")
        for i, proc in enumerate(self.procedures):
            if proc.name in names:
                raise ValueError(f"procedures[{i}].name: duplicate procedure name {proc.name!r}")
            names.add(proc.name)
            for pname in proc.params:
                if pname in self.constants:
                    raise ValueError(f"procedures[{i}].params.{pname}: clashes with a constant")
            known = set(proc.params) | set(BUILTIN_PARAMS) | set(self.constants)
            for part, steps in (("steps", proc.steps), ("rollback", proc.rollback)):
                for j, step in enumerate(steps):
                    where = f"procedures[{i}].{part}[{j}]"
                    cred = getattr(step, "credentials", None)
                    if cred is not None and cred not in self.credentials and not self.procedures_only:
                        raise ValueError(f"{where}.credentials: unknown credentials {cred!r}")
                    if (isinstance(step, SqlStep) and step.database not in self.databases
                            and not self.procedures_only):
                        raise ValueError(f"{where}.database: unknown database {step.database!r}")
                    for name in _step_templates(step):
                        if name not in known:
                            raise ValueError(f"{where}: template ${{{name}}} is not a declared parameter")
            for text in (proc.target, proc.verify.query if proc.verify else ""):
                for name in template_names(text):
                    if name not in known:
                        raise ValueError(f"procedures[{i}]: template ${{{name}}} is not a declared parameter")
        if self.escalation and self.escalation.credentials not in (None, *self.credentials):
            raise ValueError("escalation.credentials: unknown credentials")
        return self

    def path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def resolved_database_url(self) -> str:
        if self.database_url_file:
            return self.path(self.database_url_file).read_text().strip()
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.path('.vigil/remediator.db')}"


def _step_templates(step: Any) -> list[str]:
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.extend(template_names(value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    data = step.model_dump()
    data.pop("statement", None)  # SQL takes parameters as binds, never as text
    walk(data)
    return out


def parse_config(data: Any, file: str | Path | None = None) -> RemediatorConfig:
    """Validate a mapping; `procedures` may be a path to a file holding `procedures:`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", "expected a mapping at the top level")
    data = dict(data)
    base = Path(file).resolve().parent if file is not None else Path.cwd()
    data.setdefault("base_dir", str(base))
    data.pop("procedures_only", None)
    if set(data) <= {"procedures", "constants", "base_dir"} and isinstance(data.get("procedures"), list):
        data["procedures_only"] = True
    procs = data.get("procedures")
    if isinstance(procs, str):
        from vigil.paths import DEPLOY_DIR

        procs = procs.replace("${VIGIL_DEPLOY_DIR}", str(DEPLOY_DIR))
        proc_path = Path(procs) if Path(procs).is_absolute() else base / procs
        proc_data = load_yaml(proc_path)
        if not isinstance(proc_data, dict) or not isinstance(proc_data.get("procedures"), list):
            raise ConfigError(proc_path, "procedures", "expected a list of procedures")
        extra = set(proc_data) - {"procedures", "constants"}
        if extra:
            raise ConfigError(proc_path, min(extra),
                              "a procedures file holds only 'procedures' and 'constants'")
        constants = {**(proc_data.get("constants") or {}), **(data.get("constants") or {})}
        try:
            return _parse(data | {"procedures": proc_data["procedures"], "constants": constants}, file)
        except ConfigError as exc:
            if exc.path.startswith("procedures"):
                raise ConfigError(proc_path, exc.path, exc.message) from None
            raise
    return _parse(data, file)


def _parse(data: dict[str, Any], file: str | Path | None) -> RemediatorConfig:
    try:
        return parse_model(RemediatorConfig, data, file)
    except ConfigError as exc:
        # cross-reference errors carry their own key path in the message
        m = re.match(r"^Value error, (procedures\[\d+\][^:]*|escalation\.\w+): (.*)$", exc.message)
        if m and not exc.path:
            raise ConfigError(file, m.group(1), m.group(2)) from None
        raise


def load_config(path: str | Path) -> RemediatorConfig:
    """Load the remediator config (or a procedures-only file) and validate everything."""
    return parse_config(load_yaml(path), path)
