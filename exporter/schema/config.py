"""Configuration of the schema checks: where the database is, what it should look like, what to lint.

Database URLs are SecretStr and are only ever rendered through `redact_url`, so a password in
a URL never reaches a metric, a log line or an error message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from vigil.config import ConfigError, StrictModel

__all__ = [
    "LINT_RULES",
    "CodeReferencesConfig",
    "DatabaseSource",
    "DriftConfig",
    "ExpectedSchemaConfig",
    "LintConfig",
    "SchemaCheckConfig",
    "SchemaSpec",
    "SpecColumn",
    "SpecForeignKey",
    "SpecIndex",
    "SpecTable",
]

LINT_RULES = (
    "fk_without_index",
    "table_without_primary_key",
    "invalid_index",
    "duplicate_index",
    "nullable_fk_column",
    "sequence_exhaustion",
)


class DatabaseSource(StrictModel):
    """A database URL given inline, in a file, or in an environment variable (exactly one)."""

    url: SecretStr | None = None
    url_file: Path | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DatabaseSource:
        given = [n for n in ("url", "url_file", "url_env") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of url, url_file, url_env")
        return self

    def resolve_url(self, key: str = "url") -> str:
        """Return the URL; raise ConfigError (never showing the value) if it cannot be read."""
        if self.url is not None:
            return self.url.get_secret_value()
        if self.url_env is not None:
            value = os.environ.get(self.url_env, "").strip()
            if not value:
                raise ConfigError(None, f"{key}_env",
                                  f"environment variable {self.url_env} is not set or empty")
            return value
        assert self.url_file is not None
        try:
            value = self.url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(self.url_file, f"{key}_file",
                              f"cannot read database URL file: {exc.__class__.__name__}") from None
        if not value:
            raise ConfigError(self.url_file, f"{key}_file", "database URL file is empty")
        return value


# --- declared YAML spec ----------------------------------------------------------------------

class SpecColumn(StrictModel):
    """A declared column. Omit `nullable` or `default` to not compare them; `default: null` means
    no default."""

    type: str
    nullable: bool | None = None
    default: str | None = None
    default_set: bool = Field(default=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _mark_default(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"type": data}
        if isinstance(data, dict) and "default" in data:
            data = dict(data)
            data["default_set"] = True
            if data["default"] is not None:
                data["default"] = str(data["default"])
        return data


class SpecForeignKey(StrictModel):
    """`columns: [user_id]`, `references: users(id)` or `references: {table: users, columns: [id]}`."""

    columns: list[str]
    references: str | dict[str, Any]
    on_delete: str | None = None
    on_update: str | None = None

    def target(self) -> tuple[str, list[str]]:
        """Return (referenced table, referenced columns)."""
        ref = self.references
        if isinstance(ref, dict):
            return str(ref["table"]), [str(c) for c in ref.get("columns", [])]
        if "(" in ref and ref.endswith(")"):
            table, cols = ref[:-1].split("(", 1)
            return table.strip(), [c.strip() for c in cols.split(",") if c.strip()]
        return ref.strip(), []

    @field_validator("references")
    @classmethod
    def _check_ref(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(v, dict) and "table" not in v:
            raise ValueError("references needs a 'table' key")
        return v


class SpecIndex(StrictModel):
    """A declared index: key columns (or expressions), uniqueness, optional name and predicate."""

    columns: list[str]
    unique: bool = False
    name: str | None = None
    where: str | None = None


class SpecTable(StrictModel):
    """A declared table."""

    columns: dict[str, SpecColumn] = Field(default_factory=dict)
    primary_key: list[str] | None = None
    unique: list[list[str]] = Field(default_factory=list)
    foreign_keys: list[SpecForeignKey] = Field(default_factory=list)
    indexes: list[SpecIndex] = Field(default_factory=list)


class SchemaSpec(StrictModel):
    """The declared schema: tables (unqualified names live in the target's default schema)."""

    tables: dict[str, SpecTable] = Field(default_factory=dict)
    views: list[str] = Field(default_factory=list)
    required_tables: list[str] = Field(default_factory=list)
    enums: dict[str, list[str]] = Field(default_factory=dict)
    functions: list[str] = Field(
        default_factory=list, description="functions that must exist, by name (any arguments)")
    extensions: list[str] = Field(default_factory=list,
                                  description="extensions that must be installed (any version)")


# --- the check config ------------------------------------------------------------------------

class ExpectedSchemaConfig(StrictModel):
    """Where the expected schema comes from: exactly one source."""

    spec: SchemaSpec | None = None
    spec_file: Path | None = None
    sqlalchemy_metadata: str | None = Field(
        default=None, description="'package.module:metadata' (a MetaData or a declarative Base)")
    reference: DatabaseSource | None = None
    reference_schemas: list[str] = Field(default_factory=list)
    sql_file: Path | None = None
    scratch: DatabaseSource | None = Field(
        default=None,
        description="database where sql_file is loaded into a throwaway schema "
                    "(required when the target is PostgreSQL; the target is never written)")
    ignore_extra: bool = Field(default=False, description="do not report extra objects (info)")
    compare_privileges: bool = Field(
        default=False, description="also compare table grants (database and SQL sources)")

    @model_validator(mode="after")
    def _exactly_one(self) -> ExpectedSchemaConfig:
        sources = [n for n in ("spec", "spec_file", "sqlalchemy_metadata", "reference", "sql_file")
                   if getattr(self, n) is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of spec, spec_file, sqlalchemy_metadata, "
                             "reference, sql_file")
        if self.sqlalchemy_metadata is not None and ":" not in self.sqlalchemy_metadata:
            raise ValueError("sqlalchemy_metadata must look like 'package.module:metadata'")
        if self.scratch is not None and self.sql_file is None:
            raise ValueError("scratch is only used with sql_file")
        return self


class LintConfig(StrictModel):
    """Lints on the live schema; `disable` takes rule names."""

    enabled: bool = True
    disable: list[Literal[
        "fk_without_index", "table_without_primary_key", "invalid_index", "duplicate_index",
        "nullable_fk_column", "sequence_exhaustion"]] = Field(default_factory=list)
    ignore_tables: list[str] = Field(default_factory=list)
    sequence_warning_percent: float = Field(default=75.0, gt=0, le=100)
    sequence_critical_percent: float = Field(default=90.0, gt=0, le=100)

    @model_validator(mode="after")
    def _order(self) -> LintConfig:
        if self.sequence_warning_percent > self.sequence_critical_percent:
            raise ValueError("sequence_warning_percent must not exceed sequence_critical_percent")
        return self


class DriftConfig(StrictModel):
    """Compare the schema fingerprint with a baseline recorded by `vigil schema baseline`."""

    baseline_file: Path
    # error: the check fails until a baseline exists; ignore: no drift sample until then;
    # record: trust on first use, the first successful inspection becomes the baseline
    missing_baseline: Literal["error", "ignore", "record"] = "error"


class CodeReferencesConfig(StrictModel):
    """Scan source trees for table names that the database does not have."""

    paths: list[Path] = Field(min_length=1)
    include: list[str] = Field(default_factory=lambda: ["**/*.py", "**/*.sql"])
    exclude: list[str] = Field(default_factory=lambda: [
        "**/.venv/**", "**/venv/**", "**/node_modules/**", "**/.git/**", "**/__pycache__/**"])
    ignore_names: list[str] = Field(default_factory=list)
    report_unreferenced: bool = True
    missing_severity: Literal["critical", "warning", "info"] = "critical"


class SchemaCheckConfig(DatabaseSource):
    """The `schema:` block of a target: a database plus the schema checks to run against it.

    Checks made from it: `schema` (when `expected` is set), `schema_lint` (when lint.enabled),
    `schema_drift` (when `drift` is set) and `code_references` (when `code_references` is set).
    """

    schemas: list[str] = Field(default_factory=list, description="default: the search path")
    expected: ExpectedSchemaConfig | None = None
    lint: LintConfig = Field(default_factory=LintConfig)
    drift: DriftConfig | None = None
    code_references: CodeReferencesConfig | None = None
    statement_timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    min_interval: float = Field(default=60.0, ge=0)
    keep_connection: bool = Field(
        default=True, description="PostgreSQL: keep one idle connection between runs")

    def resolve_paths(self, base: Path) -> SchemaCheckConfig:
        """Return a copy whose relative file paths are taken relative to `base` (the config dir)."""

        def fix(p: Path | None) -> Path | None:
            return p if p is None or p.is_absolute() else base / p

        data = self.model_copy(deep=True)
        data.url_file = fix(data.url_file)
        if data.expected is not None:
            data.expected.spec_file = fix(data.expected.spec_file)
            data.expected.sql_file = fix(data.expected.sql_file)
            for src in (data.expected.reference, data.expected.scratch):
                if src is not None:
                    src.url_file = fix(src.url_file)
        if data.drift is not None:
            data.drift.baseline_file = fix(data.drift.baseline_file)  # type: ignore[assignment]
        if data.code_references is not None:
            data.code_references.paths = [fix(p) for p in data.code_references.paths]  # type: ignore[misc]
        return data
