"""The environment check: required variables, types, patterns, secret quality, baseline drift.

Values never leave this module: findings name the variable and a fixed reason, the baseline
holds salted PBKDF2 hashes, and parse errors report line numbers only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from vigil.exporter.base import CheckError, CheckResult, Finding, Severity
from vigil.exporter.config import EnvConfig, EnvVariable, TargetConfig
from vigil.exporter.secrets import SECRET_FORMATS, is_known_example, is_placeholder, is_weak

__all__ = [
    "BASELINE_ITERATIONS",
    "EnvCheck",
    "check_type",
    "hash_value",
    "lookup",
    "parse_dotenv",
    "read_env",
    "read_env_lines",
    "write_baseline",
]

BASELINE_ITERATIONS = 60_000
_BOOL = {"true", "false", "1", "0", "yes", "no", "on", "off"}
_DURATION = re.compile(r"^(\d+(\.\d+)?(ms|s|m|h|d|w|y))+$")
_INT = re.compile(r"^[+-]?\d+$")


def parse_dotenv(text: str) -> tuple[dict[str, str], list[int]]:
    """Parse a dotenv file with python-dotenv, the loader most apps use, so a file the app
    accepts is read the same way: (values, line numbers python-dotenv could not parse).

    `${VAR}` references are not expanded: the exporter's environment is not the app's, so an
    unexpanded reference stays visible (and is reported as a placeholder)."""
    from dotenv.parser import parse_stream

    out: dict[str, str] = {}
    bad: list[int] = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            bad.append(binding.original.line)
        elif binding.key is not None and binding.value is not None:
            out[binding.key] = binding.value  # a bare KEY (no =) is not set by load_dotenv
    return out, bad


def read_env(cfg: EnvConfig) -> dict[str, str]:
    """The variables to judge, from the process environment, a dotenv file or a YAML mapping."""
    return read_env_lines(cfg)[0]


def read_env_lines(cfg: EnvConfig) -> tuple[dict[str, str], list[int]]:
    """read_env, plus the dotenv lines python-dotenv skipped (empty for other sources)."""
    if cfg.source != "dotenv":
        return _read_env(cfg), []
    assert cfg.file is not None
    path = Path(cfg.file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc.__class__.__name__
        raise CheckError(f"cannot read {path}: {reason}") from None
    return parse_dotenv(text)


def _read_env(cfg: EnvConfig) -> dict[str, str]:
    if cfg.source == "process":
        return dict(os.environ)
    assert cfg.file is not None
    path = Path(cfg.file)
    if cfg.source == "directory":
        return _read_directory(cfg, path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise CheckError(f"{path}: invalid YAML at line {line}") from None
    except yaml.YAMLError:
        raise CheckError(f"{path}: invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckError(f"{path}: expected a mapping of variable names to values")
    return {
        str(k): "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        for k, v in data.items()
    }


def _read_directory(cfg: EnvConfig, path: Path) -> dict[str, str]:
    """One file per variable (Docker/Kubernetes secret mounts): the file name is `key`."""
    if not path.is_dir():
        raise CheckError(f"{path} is not a directory")
    out: dict[str, str] = {}
    for var in cfg.variables:
        name = var.key or var.name
        try:
            out[name] = (path / name).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckError(f"cannot read {path / name}: {exc.__class__.__name__}") from None
    return out


def lookup(env: dict[str, str], var: EnvVariable) -> str | None:
    """The variable's value in the source (by `key` when given)."""
    return env.get(var.key or var.name)


def check_type(value: str, var: EnvVariable) -> str | None:
    """Why the value does not have the declared type (fixed text), or None."""
    kind = var.type
    if kind == "int" and not _INT.match(value):
        return "is not an integer"
    if kind == "bool" and value.lower() not in _BOOL:
        return "is not a boolean (true/false/1/0/yes/no/on/off)"
    if kind == "port" and not (value.isdigit() and 1 <= int(value) <= 65535):
        return "is not a port number (1-65535)"
    if kind == "url":
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
            ok = bool(parts.scheme) and bool(parts.netloc)
        except ValueError:
            ok = False
        if not ok:
            return "is not a URL (scheme://host...)"
    if kind == "enum" and value not in (var.values or []):
        return "is not one of the allowed values " + ", ".join(var.values or [])
    if kind == "duration" and not _DURATION.match(value):
        return "is not a duration like 30s, 5m, 1h30m"
    return None


def hash_value(value: str | None, salt: bytes, iterations: int = BASELINE_ITERATIONS) -> str | None:
    """Salted PBKDF2-SHA256 of a value (None stays None: the variable was absent)."""
    if value is None:
        return None
    return hashlib.pbkdf2_hmac("sha256", value.encode(), salt, iterations).hex()


def _baseline_payload(cfg: EnvConfig, env: dict[str, str]) -> dict[str, Any]:
    salt = secrets.token_bytes(16)
    return {
        "version": 1,
        "kdf": "pbkdf2_sha256",
        "iterations": BASELINE_ITERATIONS,
        "salt": salt.hex(),
        "variables": {v.name: hash_value(lookup(env, v), salt) for v in cfg.variables if v.drift},
    }


def write_baseline(cfg: EnvConfig, env: dict[str, str] | None = None) -> Path:
    """Record the current values' salted hashes as the baseline (never the values)."""
    if not cfg.baseline_file:
        raise CheckError("env.baseline_file is not configured")
    path = Path(cfg.baseline_file)
    payload = _baseline_payload(cfg, read_env(cfg) if env is None else env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        "# vigil env baseline: salted PBKDF2 hashes, no values\n"
        + yaml.safe_dump(payload, sort_keys=True)
    )
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def _load_baseline(path: Path) -> tuple[bytes, int, dict[str, str | None]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        salt = bytes.fromhex(data["salt"])
        iterations = int(data.get("iterations", BASELINE_ITERATIONS))
        variables = dict(data["variables"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        raise CheckError(f"env baseline {path} is unreadable or malformed") from None
    return salt, iterations, variables


class EnvCheck:
    """Judge each declared variable; compare against the hashed baseline when configured."""

    name = "env"

    def __init__(self, target: TargetConfig, cfg: EnvConfig) -> None:
        self.target = target.name
        self.cfg = cfg
        self.min_interval = cfg.min_interval

    async def __call__(self, timeout: float) -> CheckResult:
        # PBKDF2 and file reads block; keep the event loop (and /metrics) free.
        return await asyncio.to_thread(self.run)

    def run(self) -> CheckResult:
        result = CheckResult(self.target, self.name, success=True)
        env, bad = read_env_lines(self.cfg)
        if bad and self.cfg.file:
            result.findings.append(
                Finding(
                    "dotenv_unparsable",
                    Severity.WARNING,
                    Path(self.cfg.file).name,
                    "python-dotenv skips line(s) "
                    + ", ".join(str(n) for n in bad)
                    + ", so the app does not see what they set",
                    "write each line as KEY=VALUE, quoting values with spaces or #",
                )
            )
        for var in self.cfg.variables:
            problems = self._judge(var, lookup(env, var))
            result.findings.extend(problems)
            valid = not any(f.severity != Severity.INFO for f in problems)
            result.add_sample(
                "vigil_env_valid",
                {"target": self.target, "variable": var.name},
                1.0 if valid else 0.0,
            )
        if self.cfg.baseline_file:
            self._drift(result, env)
        return result

    def _judge(self, var: EnvVariable, value: str | None) -> list[Finding]:
        name = var.name
        if value is None or value == "":
            if var.required:
                return [
                    Finding(
                        "missing",
                        Severity.CRITICAL,
                        name,
                        f"required variable {name} is " + ("empty" if value == "" else "not set"),
                        f"set {name} in the deployment's environment",
                    )
                ]
            return []
        out: list[Finding] = []
        if var.secret:
            if is_placeholder(value):
                return [
                    Finding(
                        "secret_placeholder",
                        Severity.CRITICAL,
                        name,
                        f"secret {name} holds a placeholder, not a real secret",
                        f"inject the real secret into {name} from your secret store",
                    )
                ]
            if is_known_example(value):
                return [
                    Finding(
                        "secret_known_example",
                        Severity.CRITICAL,
                        name,
                        f"secret {name} is a key published in documentation or tutorials",
                        f"generate a fresh secret for {name} and rotate it",
                    )
                ]
        why = check_type(value, var)
        if why:
            out.append(
                Finding(
                    "invalid",
                    Severity.CRITICAL,
                    name,
                    f"{name} {why}",
                    f"set {name} to a valid {var.type}",
                )
            )
        if var.pattern and not re.fullmatch(var.pattern, value):
            out.append(
                Finding(
                    "pattern_mismatch",
                    Severity.CRITICAL,
                    name,
                    f"{name} does not match its declared pattern",
                    f"set {name} to a value matching {var.pattern}",
                )
            )
        if var.secret:
            fmt = SECRET_FORMATS.get(var.format) if var.format else None
            if fmt is not None and not re.fullmatch(fmt.pattern, value):
                out.append(
                    Finding(
                        "secret_format_invalid",
                        Severity.CRITICAL,
                        name,
                        f"secret {name} is not a well-formed {fmt.description}",
                        f"check that {name} holds the whole {fmt.description}",
                    )
                )
            if fmt is not None and value.startswith(fmt.test_prefixes or ("\0",)):
                out.append(
                    Finding(
                        "secret_test_key",
                        Severity.WARNING,
                        name,
                        f"secret {name} is a test-mode {fmt.description}",
                        f"use the live key in {name} for production deploys",
                    )
                )
            weak = is_weak(value, var.min_length if var.min_length is not None else 16)
            if weak:
                out.append(
                    Finding(
                        "secret_weak",
                        Severity.WARNING,
                        name,
                        f"secret {name} is weak: {weak}",
                        f"generate {name} with a CSPRNG, e.g. `openssl rand -hex 32`",
                    )
                )
        elif var.min_length is not None and len(value) < var.min_length:
            out.append(
                Finding(
                    "invalid",
                    Severity.CRITICAL,
                    name,
                    f"{name} is shorter than {var.min_length} characters",
                    f"set {name} to a longer value",
                )
            )
        return out

    def _drift(self, result: CheckResult, env: dict[str, str]) -> None:
        assert self.cfg.baseline_file is not None
        path = Path(self.cfg.baseline_file)
        if not path.exists() and self.cfg.record_missing_baseline:
            write_baseline(self.cfg, env)
        if not path.exists():
            result.findings.append(
                Finding(
                    "baseline_missing",
                    Severity.WARNING,
                    str(path.name),
                    "the env baseline file does not exist, so drift cannot be judged",
                    "record one with `vigil validate --write-env-baseline` from a known-good deploy",
                )
            )
            return
        salt, iterations, baseline = _load_baseline(path)
        for var in self.cfg.variables:
            if not var.drift:
                continue
            labels = {"target": self.target, "variable": var.name}
            if var.name not in baseline:
                result.findings.append(
                    Finding(
                        "baseline_unknown_variable",
                        Severity.INFO,
                        var.name,
                        f"{var.name} is not in the baseline",
                        "re-record the baseline after reviewing the new variable",
                    )
                )
                result.add_sample("vigil_env_drift", labels, 0.0)
                continue
            expected = baseline[var.name]
            current = hash_value(lookup(env, var), salt, iterations)
            same = (expected is None and current is None) or (
                expected is not None
                and current is not None
                and hmac.compare_digest(str(expected), current)
            )
            result.add_sample("vigil_env_drift", labels, 0.0 if same else 1.0)
            if not same:
                result.findings.append(
                    Finding(
                        "drift",
                        Severity.WARNING,
                        var.name,
                        f"{var.name} differs from the baseline"
                        + (" (secret; compared by salted hash)" if var.secret else ""),
                        "if the change is intended, re-record the baseline; otherwise restore the "
                        "known-good value",
                    )
                )
