"""The service spec (deploy/services.yml): which services Vigil watches and where their signals are.

A service names its Prometheus job, the preset of its HTTP instrumentation and the presets of
the exporters that report its resources (memory, disk, database connections, probes,
restarts). Presets map Vigil's generic signals to real metric and label names; the bundled
ones are in vigil/presets.yml and a spec may add its own under `presets:`. `vigil rules
generate` renders the rules from a loaded spec (vigil/rulegen.py).

Every problem is a ConfigError naming the file and key path, e.g.
`deploy/services.yml: services.shop.http.preset: unknown HTTP preset 'flsk' (known: ...)`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import promql_parser
from pydantic import AfterValidator, Field, field_validator

from vigil.config import ConfigError, StrictModel, load_yaml, parse_model

__all__ = [
    "CONCERNS",
    "SEL",
    "AlertOverride",
    "HttpPreset",
    "HttpSource",
    "ResourceSource",
    "Service",
    "ServiceSpec",
    "load_config",
    "load_presets",
    "matchers_of",
]

PRESETS_FILE = Path(__file__).with_name("presets.yml")
SEL = "<sel>"
# concern -> its signals; the first one is what a source of that concern must provide.
CONCERNS: dict[str, tuple[str, ...]] = {
    "memory": ("memory_used", "memory_limit"),
    "disk": ("disk_used", "disk_capacity"),
    "connections": ("connections_used", "connections_max", "db_up"),
    "probes": ("probe_success", "probe_duration", "tls_expiry"),
    "restarts": ("restarts", "oom_kills"),
}
SIGNALS = tuple(s for signals in CONCERNS.values() for s in signals)
_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _selector(value: str) -> str:
    """A PromQL label-matcher set such as `{env="prod", instance=~"web-.*"}` (or empty)."""
    value = value.strip()
    if not value:
        return ""
    if not (value.startswith("{") and value.endswith("}")):
        raise ValueError("a selector is a set of label matchers in braces, e.g. {env=\"prod\"}")
    try:
        node = promql_parser.parse("vigil_selector" + value)
    except ValueError:
        raise ValueError("not valid PromQL label matchers") from None
    if not isinstance(node, promql_parser.VectorSelector):
        raise ValueError("not valid PromQL label matchers")  # noqa: TRY004 (pydantic wants ValueError)
    if any(m.name == "__name__" for m in node.matchers.matchers):
        raise ValueError("a selector may not match __name__")
    return value


def _metric(value: str) -> str:
    if not _METRIC.match(value):
        raise ValueError("not a Prometheus metric name")
    return value


def _label(value: str) -> str:
    if not _LABEL.match(value):
        raise ValueError("not a Prometheus label name")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error:
        raise ValueError("not a valid regular expression") from None
    return value


def check_signal_expr(expr: str) -> str:
    """A signal expression: PromQL, once `<sel>` is filled in."""
    try:
        promql_parser.parse(fill(expr, 'job="x"'))
    except ValueError:
        raise ValueError("not a valid PromQL expression (write <sel> inside the label braces "
                         "of each selector)") from None
    return expr


def fill(expr: str, matchers: str) -> str:
    """Put a source's matchers where a signal expression says `<sel>`."""
    out = expr.replace(SEL, matchers)
    # `{container!="", }` when the source has no matchers: drop the dangling comma
    return re.sub(r",\s*}", "}", re.sub(r"{\s*,\s*", "{", out))


def matchers_of(selector: str) -> list[str]:
    """The matchers of a selector as PromQL text, in their written order."""
    if not selector:
        return []
    node = promql_parser.parse("vigil_selector" + selector)
    assert isinstance(node, promql_parser.VectorSelector)
    text = str(node.matchers).strip()[1:-1]
    return [m.strip() for m in _split_matchers(text)]


def _split_matchers(text: str) -> list[str]:
    parts, cur, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            cur, escaped = cur + ch, False
            continue
        if ch == "\\":
            cur, escaped = cur + ch, True
            continue
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


Selector = Annotated[str, AfterValidator(_selector)]
MetricName = Annotated[str, AfterValidator(_metric)]
LabelName = Annotated[str, AfterValidator(_label)]
SignalExpr = Annotated[str, AfterValidator(check_signal_expr)]


class HttpPreset(StrictModel):
    """Where an HTTP library puts request counts, latency, route and status."""

    requests: MetricName = Field(description="counter of answered requests (or a histogram's _count)")
    duration: MetricName = Field(description="latency histogram in seconds, without _bucket")
    route_label: LabelName
    status_label: LabelName
    error_status: Annotated[str, AfterValidator(_regex)] = "5.."


class Presets(StrictModel):
    http: dict[str, HttpPreset] = Field(default_factory=dict)
    resources: dict[str, dict[str, SignalExpr]] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _known_signals(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, signals in value.items():
            for signal in signals:
                if signal not in SIGNALS:
                    raise ValueError(f"{name}.{signal}: unknown signal (known: {', '.join(SIGNALS)})")
        return value


class HttpSource(StrictModel):
    preset: str
    # Overrides of the preset's labels, e.g. route_label: url_rule for Flask's group_by.
    route_label: LabelName | None = None
    status_label: LabelName | None = None


class ResourceSource(StrictModel):
    """One exporter's series for one concern of a service."""

    preset: str | None = None
    # The source's scrape job. Left out: the service's job. null: no job matcher (e.g. the
    # cAdvisor and kube-state-metrics series of a pod, selected by namespace and pod).
    job: str | None = None
    selector: Selector = ""
    # Per-signal PromQL, added to or overriding the preset's.
    signals: dict[str, SignalExpr] = Field(default_factory=dict)

    @field_validator("signals")
    @classmethod
    def _known(cls, value: dict[str, str]) -> dict[str, str]:
        for signal in value:
            if signal not in SIGNALS:
                raise ValueError(f"unknown signal {signal!r} (known: {', '.join(SIGNALS)})")
        return value


class Resources(StrictModel):
    memory: ResourceSource | None = None
    disk: ResourceSource | None = None
    connections: ResourceSource | None = None
    probes: ResourceSource | None = None
    restarts: ResourceSource | None = None


class Slo(StrictModel):
    objective: float = Field(0.999, gt=0, lt=1, description="share of requests that succeed over 30 days")


class Service(StrictModel):
    # Prometheus job of the service's own /metrics; defaults to the service's name. It is
    # also the `target` label of every alert about the service.
    job: str | None = None
    selector: Selector = ""
    http: HttpSource | None = None
    resources: Resources = Resources()
    slo: Slo | None = None
    depends_on: list[str] = Field(default_factory=list)
    # Name of the service's target in the exporter's config (deploy/exporter.yml).
    checks: str | None = None


class VigilJobs(StrictModel):
    """Scrape jobs of Vigil's own components (the self-monitoring alerts select them)."""

    exporter: str = "vigil-exporter"
    forecaster: str = "vigil-forecaster"
    remediator: str = "vigil-remediator"


_DURATION = re.compile(r"^(?:[0-9]+(?:ms|[smhdwy]))+$")


class AlertOverride(StrictModel):
    """Changes to one generated alert: how long it must hold, and labels added or replaced
    (e.g. remediation: auto for an alert a deployment's own procedure handles)."""

    for_: str | None = Field(None, alias="for", description="a Prometheus duration, e.g. 5m")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("for_")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None and not _DURATION.match(value):
            raise ValueError(f"not a Prometheus duration: {value!r} (e.g. 90s, 5m, 1h30m)")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL.match(name) or name == "alertname":
                raise ValueError(f"{name!r} is not a label an alert may set")
        return value


class ServiceSpec(StrictModel):
    vigil: VigilJobs = VigilJobs()
    presets: Presets = Presets()
    services: dict[str, Service] = Field(min_length=1)
    # generated alert name -> override; `vigil rules generate` rejects a name it does not render
    alerts: dict[str, AlertOverride] = Field(default_factory=dict)

    @field_validator("services")
    @classmethod
    def _names(cls, value: dict[str, Service]) -> dict[str, Service]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"service name {name!r} may hold only letters, digits, _ . -")
        return value

    # --- resolved views, valid once load_config() has checked references ---------------

    def job_of(self, name: str) -> str:
        return self.services[name].job or name

    def http_preset(self, name: str) -> HttpPreset:
        source = self.services[name].http
        assert source is not None
        preset = self.all_presets.http[source.preset]
        update = {k: v for k, v in (("route_label", source.route_label),
                                    ("status_label", source.status_label)) if v}
        return preset.model_copy(update=update)

    def signals_of(self, name: str, concern: str) -> dict[str, str]:
        """signal -> PromQL with the source's matchers filled in."""
        service = self.services[name]
        source: ResourceSource | None = getattr(service.resources, concern)
        if source is None:
            return {}
        exprs = dict(self.all_presets.resources.get(source.preset or "", {}))
        exprs.update(source.signals)
        job = self.job_of(name) if "job" not in source.model_fields_set else source.job
        matchers = ([f'job="{job}"'] if job else []) + matchers_of(source.selector)
        return {s: fill(exprs[s], ", ".join(matchers)) for s in CONCERNS[concern] if s in exprs}

    def http_matchers(self, name: str) -> str:
        service = self.services[name]
        return ", ".join([f'job="{self.job_of(name)}"', *matchers_of(service.selector)])

    @property
    def all_presets(self) -> Presets:
        bundled = load_presets()
        return Presets(http={**bundled.http, **self.presets.http},
                       resources={**bundled.resources, **self.presets.resources})


def load_presets(path: Path = PRESETS_FILE) -> Presets:
    return parse_model(Presets, load_yaml(path), path)


def _check_references(spec: ServiceSpec, file: str | Path | None) -> None:
    presets = spec.all_presets
    for name, service in spec.services.items():
        where = f"services.{name}"
        if service.http is not None and service.http.preset not in presets.http:
            raise ConfigError(file, f"{where}.http.preset",
                              f"unknown HTTP preset {service.http.preset!r} "
                              f"(known: {', '.join(sorted(presets.http))})")
        for concern, signals in CONCERNS.items():
            source: ResourceSource | None = getattr(service.resources, concern)
            if source is None:
                continue
            at = f"{where}.resources.{concern}"
            if source.preset is not None and source.preset not in presets.resources:
                raise ConfigError(file, f"{at}.preset", f"unknown resource preset {source.preset!r} "
                                  f"(known: {', '.join(sorted(presets.resources))})")
            for signal in source.signals:
                if signal not in signals:
                    raise ConfigError(file, f"{at}.signals.{signal}",
                                      f"not a {concern} signal (those are: {', '.join(signals)})")
            have = set(presets.resources.get(source.preset or "", {})) | set(source.signals)
            if signals[0] not in have:
                what = f"preset {source.preset!r}" if source.preset else "this source"
                raise ConfigError(file, f"{at}.preset" if source.preset else at,
                                  f"{what} has no {signals[0]} signal; name another preset or "
                                  f"write signals.{signals[0]}")
        for i, dep in enumerate(service.depends_on):
            if dep not in spec.services:
                raise ConfigError(file, f"{where}.depends_on[{i}]", f"unknown service {dep!r}")
            if dep == name:
                raise ConfigError(file, f"{where}.depends_on[{i}]", "a service cannot depend on itself")
    jobs: dict[str, str] = {}
    for name in spec.services:
        job = spec.job_of(name)
        if job in jobs:
            raise ConfigError(file, f"services.{name}.job",
                              f"job {job!r} is already the job of service {jobs[job]!r}")
        jobs[job] = name


def parse_spec(data: Any, file: str | Path | None = None) -> ServiceSpec:
    spec = parse_model(ServiceSpec, data, file)
    _check_references(spec, file)
    return spec


def load_config(path: str | Path) -> ServiceSpec:
    """Load and check a service spec (the `vigil check-config` entry point)."""
    return parse_spec(load_yaml(path), path)
