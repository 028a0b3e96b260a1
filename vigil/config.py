"""Load YAML configuration into pydantic models with errors that name the file and key path.

Error text is built from the key path and pydantic's message only, never from the
offending value, so a misplaced secret is not echoed back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["ConfigError", "StrictModel", "key_path", "load_config", "load_yaml", "parse_model"]

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file is missing, unreadable or invalid."""

    def __init__(self, file: str | Path | None, path: str, message: str) -> None:
        self.file = str(file) if file is not None else None
        self.path = path
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.path:
            where = f"{where}: {self.path}"
        return f"{where}: {self.message}"


class StrictModel(BaseModel):
    """Base for config models: unknown keys are errors, so typos surface."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def key_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as a key path like `targets[0].cors.origins`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; raise ConfigError with the line of a syntax error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(p, "", f"cannot read file: {exc.__class__.__name__}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(p, "", f"invalid YAML: {line}{exc.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(p, "", "invalid YAML") from None


def parse_model(model: type[M], data: Any, file: str | Path | None = None) -> M:
    """Validate data against a model; every error, with its key path, becomes one ConfigError."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = errors[0]
        rest = "".join(f"; {key_path(tuple(e['loc']))}: {e['msg']}" for e in errors[1:])
        raise ConfigError(file, key_path(tuple(first["loc"])), f"{first['msg']}{rest}") from None


def load_config(model: type[M], path: str | Path) -> M:
    """Load and validate a YAML config file."""
    return parse_model(model, load_yaml(path), path)
