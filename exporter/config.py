"""The exporter's configuration: targets, and per target the checks to run against it.

`load_config(path)` is what `vigil check-config` calls; errors name the file and key path
(`targets[0].cors.origins[1]`) and never echo the offending value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from vigil.config import ConfigError, StrictModel, key_path, load_yaml

__all__ = [
    "HTTP_METHODS",
    "CorsConfig",
    "EndpointConfig",
    "EnvConfig",
    "EnvVariable",
    "ExporterConfig",
    "GateConfig",
    "JourneyConfig",
    "JourneyStep",
    "SecurityConfig",
    "TargetConfig",
    "load_config",
    "parse_config",
    "schema_config_model",
]

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_NAME = r"^[a-zA-Z_][a-zA-Z0-9_.:-]*$"
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (header names)


def _origin(value: str) -> str:
    if value == "null":
        return value
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or "@" in parts.netloc
    ):
        raise ValueError(
            "an origin is scheme://host[:port] with no path, query or user, "
            "e.g. https://app.example.com"
        )
    if any(c in parts.netloc for c in "*?") or "[" in parts.netloc.lstrip("["):
        raise ValueError(
            "an origin is one exact scheme://host[:port]; glob patterns such as * are not "
            "expanded (the check derives look-alike origins itself)"
        )
    if parts.netloc != parts.netloc.lower():
        raise ValueError(
            "write the host in lower case: browsers send origins in lower case, so this one "
            "would never match"
        )
    return value.rstrip("/")


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use headers_from_env")
    return value.rstrip("/")


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("a path starts with '/'")
    return value


def _compile(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc.msg}") from None
    return value


def _method(value: str) -> str:
    upper = value.upper()
    if upper not in HTTP_METHODS:
        raise ValueError(f"unknown method; expected one of {', '.join(HTTP_METHODS)}")
    if value != upper:
        # Browsers send PATCH as written and servers compare methods case-sensitively, so a
        # lower-case name here would probe (and pass) a request the front-end never makes.
        raise ValueError(f"write methods in upper case ({upper}), as browsers send them")
    return upper


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError("not a valid HTTP header name")
    return value


Origin = Annotated[str, AfterValidator(_origin)]
Method = Annotated[str, AfterValidator(_method)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
UrlPath = Annotated[str, AfterValidator(_path)]
Regex = Annotated[str, AfterValidator(_compile)]


class _CheckBase(StrictModel):
    enabled: bool = True
    # A scrape inside min_interval of the last run is served from cache.
    min_interval: float = Field(0.0, ge=0)
    timeout: float | None = Field(
        None, gt=0, description="per-check cap on top of the scrape budget"
    )


class CorsConfig(_CheckBase):
    """Probe the CORS matrix: every origin x method (+ required headers) as a browser would."""

    path: UrlPath = "/"
    origins: list[Origin] = Field(min_length=1, description="origins the front-ends use")
    methods: list[Method] = list(HTTP_METHODS)
    required_methods: list[Method] | None = None  # default: all of `methods`
    request_headers: list[HeaderName] = []
    required_headers: list[HeaderName] | None = None  # default: all of `request_headers`
    credentials: bool = True  # the front-end sends cookies/Authorization (credentials: 'include')
    disallowed_origins: list[Origin] = []  # extra origins that must NOT be accepted
    simple_requests: list[Method] = ["GET"]  # actual requests sent after the preflights
    concurrency: int = Field(16, ge=1, le=256)
    request_timeout: float = Field(5.0, gt=0)

    @field_validator("simple_requests")
    @classmethod
    def _simple(cls, values: list[str]) -> list[str]:
        for v in values:
            if v not in ("GET", "HEAD", "POST"):
                raise ValueError(
                    "only the CORS-safelisted methods GET, HEAD, POST are simple requests"
                )
        return values

    @model_validator(mode="after")
    def _required_probed(self) -> CorsConfig:
        # Only `methods` and `request_headers` are probed: a required entry outside them would
        # silently never be checked.
        missing = [m for m in self.required_methods or [] if m not in self.methods]
        if missing:
            raise ValueError(
                f"required_methods lists {', '.join(missing)}, which `methods` does not; only "
                "`methods` are probed, so add them there"
            )
        probed = {h.lower() for h in self.request_headers}
        absent = [h for h in self.required_headers or [] if h.lower() not in probed]
        if absent:
            raise ValueError(
                f"required_headers lists {', '.join(absent)}, which `request_headers` does not; "
                "only `request_headers` are probed, so add them there"
            )
        return self


EnvType = Literal["str", "int", "bool", "url", "port", "enum", "duration"]


class EnvVariable(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key: str | None = None  # name in the source when it differs (file name for `directory`)
    required: bool = True
    type: EnvType = "str"
    pattern: Regex | None = None
    values: list[str] | None = None  # for type: enum
    secret: bool = False
    format: str | None = None  # a known secret format, see exporter/secrets.py
    min_length: int | None = Field(None, ge=0)
    drift: bool = True  # compare against the baseline

    @model_validator(mode="after")
    def _enum_values(self) -> EnvVariable:
        if self.type == "enum" and not self.values:
            raise ValueError("type enum needs `values`")
        if self.format is not None:
            from vigil.exporter.secrets import SECRET_FORMATS

            if self.format not in SECRET_FORMATS:
                raise ValueError(f"unknown format; known: {', '.join(sorted(SECRET_FORMATS))}")
        return self


class EnvConfig(_CheckBase):
    """Validate the environment a target runs with, from the process, a dotenv or a YAML file."""

    source: Literal["process", "dotenv", "yaml", "directory"] = "process"
    file: str | None = None  # the dotenv/YAML file, or the directory of one-file-per-secret
    baseline_file: str | None = None
    record_missing_baseline: bool = False  # trust on first use: record when absent
    variables: list[EnvVariable] = Field(min_length=1)

    @model_validator(mode="after")
    def _file(self) -> EnvConfig:
        if self.source != "process" and not self.file:
            raise ValueError(f"source {self.source} needs `file`")
        names = [v.name for v in self.variables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate variables: {', '.join(dupes)}")
        return self


class SecurityConfig(_CheckBase):
    """Security headers, cookie flags, version disclosure and the TLS certificate."""

    paths: list[UrlPath] = ["/"]
    # Six months as the HTTP Observatory counts them (15768000 s = 182.5 days).
    hsts_min_age_seconds: int = Field(15768000, ge=0)
    # The plain-HTTP address that must redirect to https (default for an https base_url on
    # port 443: the same host on http://; otherwise not probed unless set).
    http_url: Annotated[str, AfterValidator(_http_url)] | None = None
    tls_warning_days: float = Field(21, ge=0)
    tls_critical_days: float = Field(7, ge=0)
    cookies_readable_by_js: list[str] = []  # cookie names allowed without HttpOnly
    request_timeout: float = Field(5.0, gt=0)


class EndpointConfig(StrictModel):
    name: str = Field(pattern=_NAME)
    path: UrlPath
    method: Method = "GET"
    expect_status: list[int] = [200]
    latency_budget: float = Field(1.0, gt=0)
    timeout: float = Field(5.0, gt=0)
    headers: dict[str, str] = {}
    body_contains: str | None = None
    json_path: str | None = None
    json_equals: Any = None
    json_exists: bool = True
    severity: Literal["critical", "warning", "info"] = "critical"

    @field_validator("json_path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        if value is not None:
            from vigil.exporter.jsonpath import JsonPathError, parse_path

            try:
                parse_path(value)
            except JsonPathError as exc:
                raise ValueError(str(exc)) from None
        return value


class EndpointsConfig(_CheckBase):
    concurrency: int = Field(16, ge=1, le=256)
    items: list[EndpointConfig] = Field(min_length=1)


class JourneyStep(StrictModel):
    name: str = Field(pattern=_NAME)
    method: Method = "GET"
    path: UrlPath  # may use {captured} placeholders
    headers: dict[str, str] = {}
    json_body: Any = Field(None, alias="json")
    expect_status: list[int] = [200]
    expect_json: dict[str, Any] = {}  # json path -> expected value
    capture: dict[str, str] = {}  # name -> json path into the response
    latency_budget: float = Field(2.0, gt=0)
    always: bool = False  # run even after an earlier step failed (cleanup)

    @field_validator("capture")
    @classmethod
    def _capture(cls, value: dict[str, str]) -> dict[str, str]:
        _check_paths(value.values())
        return value

    @field_validator("expect_json")
    @classmethod
    def _expect(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_paths(value.keys())
        return value


def _check_paths(paths: Any) -> None:
    from vigil.exporter.jsonpath import JsonPathError, parse_path

    for path in paths:
        try:
            parse_path(path)
        except JsonPathError as exc:
            raise ValueError(str(exc)) from None


class JourneyConfig(StrictModel):
    name: str = Field(pattern=_NAME)
    origin: Origin
    credentials: bool = True
    steps: list[JourneyStep] = Field(min_length=1)


class JourneysConfig(_CheckBase):
    request_timeout: float = Field(5.0, gt=0)
    items: list[JourneyConfig] = Field(min_length=1)


def schema_config_model() -> type[StrictModel] | None:
    """The schema check's config model from vigil.exporter.schema, or None when not built."""
    try:
        from vigil.exporter import schema
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("vigil.exporter.schema"):
            return None
        raise
    model: type[StrictModel] = schema.SchemaCheckConfig
    return model


class TargetConfig(StrictModel):
    name: str = Field(pattern=_NAME)
    base_url: Annotated[str, AfterValidator(_http_url)]
    # Sent on every non-CORS request (endpoints, journeys, security); values never in config.
    headers_from_env: dict[str, str] = {}
    headers_from_file: dict[str, str] = {}
    tls_ca_file: str | None = None  # a CA to trust for https targets (private CA, self-signed)
    cors: CorsConfig | None = None
    env: EnvConfig | None = None
    security: SecurityConfig | None = None
    endpoints: EndpointsConfig | None = None
    journeys: JourneysConfig | None = None
    # Typed by vigil.exporter.schema.SchemaCheckConfig, imported lazily (another module owns it).
    schema_: Any = Field(None, alias="schema")

    model_config = StrictModel.model_config | {"populate_by_name": True}

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema(cls, value: Any) -> Any:
        if value is None:
            return None
        model = schema_config_model()
        if model is None:
            raise ValueError(
                "schema checks are not available in this build (vigil.exporter.schema is missing)"
            )
        return model.model_validate(value)


FailOn = Literal["critical", "warning", "info", "never"]


class GateConfig(StrictModel):
    """`vigil validate`'s policy: the lowest severity that fails the gate, per check."""

    fail_on: FailOn = "warning"
    checks: dict[Annotated[str, Field(pattern=_NAME)], FailOn] = {}  # check name -> threshold

    def threshold(self, check: str) -> str:
        return self.checks.get(check, self.fail_on)


class ExporterConfig(StrictModel):
    """Top level: `targets:` (a list), plus defaults for the scrape."""

    gate: GateConfig = GateConfig()
    scrape_timeout: float = Field(10.0, gt=0, description="budget when Prometheus sends none")
    max_finding_series: int = Field(200, ge=0, description="cap on vigil_finding_info series")
    targets: list[TargetConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ExporterConfig:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        return self


def parse_config(data: Any, file: str | Path | None = None) -> ExporterConfig:
    """Validate an already-loaded mapping; relative file paths resolve next to `file`."""
    try:
        config = ExporterConfig.model_validate({} if data is None else data)
    except ValidationError as exc:
        # Every error with its key path (pydantic's messages never include the input here).
        errors = exc.errors(include_input=False, include_url=False)
        first, rest = errors[0], errors[1:]
        more = "".join(f"; {key_path(tuple(e['loc'])) or '<top>'}: {e['msg']}" for e in rest)
        raise ConfigError(file, key_path(tuple(first["loc"])), f"{first['msg']}{more}") from None
    if file is not None:
        base = Path(file).resolve().parent
        for target in config.targets:
            target.headers_from_file = {
                h: str(base / p) if not Path(p).is_absolute() else p
                for h, p in target.headers_from_file.items()
            }
            if target.env is not None:
                for attr in ("file", "baseline_file"):
                    value = getattr(target.env, attr)
                    if value and not Path(value).is_absolute():
                        setattr(target.env, attr, str(base / value))
            resolve = getattr(target.schema_, "resolve_paths", None)
            if resolve is not None:
                target.schema_ = resolve(base)
            if target.tls_ca_file and not Path(target.tls_ca_file).is_absolute():
                target.tls_ca_file = str(base / target.tls_ca_file)
    return config


def load_config(path: str | Path) -> ExporterConfig:
    """Load and validate an exporter config file (raises ConfigError)."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a mapping with a top-level `targets:` list")
    return parse_config(data, path)
