"""The env check: sources, types, secret quality, hashed baseline drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from vigil.exporter.config import parse_config
from vigil.exporter.env import write_baseline

from tests.exporter.docs_claims import assert_documented
from tests.exporter.helpers import rules, run_checks

STRONG = "Zq8v2LmR4xT9wK1pN6bYc3Hd"  # 24 chars, mixed


def env_config(tmp_path: Path, variables: list[dict[str, Any]], **env: Any) -> Any:
    return parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": "http://127.0.0.1:9",
                    "env": {"variables": variables, **env},
                }
            ]
        }
    )


def write_dotenv(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    return path


SPEC: list[dict[str, Any]] = [
    {"name": "PORT", "type": "port"},
    {"name": "LOG_LEVEL", "type": "enum", "values": ["debug", "info"]},
    {"name": "TIMEOUT", "type": "duration", "required": False},
    {"name": "DATABASE_URL", "type": "url", "secret": True, "format": "database_url"},
    {"name": "API_KEY", "secret": True, "pattern": "^[A-Za-z0-9]{24}$"},
    {"name": "STRIPE_KEY", "secret": True, "format": "stripe_secret_key", "required": False},
]
GOOD = {
    "PORT": "8080",
    "LOG_LEVEL": "info",
    "DATABASE_URL": f"postgresql://app:{STRONG}@db:5432/app",
    "API_KEY": STRONG,
}


def test_clean_env_has_no_findings(tmp_path: Path) -> None:
    cfg = env_config(
        tmp_path, SPEC, source="dotenv", file=str(write_dotenv(tmp_path / ".env", GOOD))
    )
    result = run_checks(cfg)["env"]
    assert result.success and result.findings == [], result.findings
    valid = {lab["variable"]: v for lab, v in result.samples["vigil_env_valid"]}
    assert valid == {v["name"]: 1.0 for v in SPEC}


@pytest.mark.parametrize(
    ("change", "variable", "rule"),
    [
        ({"PORT": None}, "PORT", "missing"),
        ({"PORT": "99999"}, "PORT", "invalid"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL", "invalid"),
        ({"TIMEOUT": "ten"}, "TIMEOUT", "invalid"),
        ({"API_KEY": "changeme"}, "API_KEY", "secret_placeholder"),
        ({"API_KEY": "${API_KEY}"}, "API_KEY", "secret_placeholder"),
        ({"API_KEY": "xxxxxxxxxxxx"}, "API_KEY", "secret_placeholder"),
        ({"API_KEY": "abc-def"}, "API_KEY", "pattern_mismatch"),
        ({"API_KEY": "aaaaaaaaaaaaaaaaaaaaaaaa"}, "API_KEY", "secret_weak"),
        ({"API_KEY": "AKIAIOSFODNN7EXAMPLE"}, "API_KEY", "secret_known_example"),
        ({"STRIPE_KEY": "sk_test_4eC39HqLyjWDarjtT1zdp7dc"}, "STRIPE_KEY", "secret_known_example"),
        ({"STRIPE_KEY": "sk_test_Zq8v2LmR4xT9wK1pN6bYc3Hd"}, "STRIPE_KEY", "secret_test_key"),
        ({"STRIPE_KEY": "pk_live_Zq8v2LmR4xT9wK1pN6bYc3Hd"}, "STRIPE_KEY", "secret_format_invalid"),
        ({"DATABASE_URL": "postgresql://db:5432/app"}, "DATABASE_URL", "secret_format_invalid"),
    ],
)
def test_each_problem_is_found(
    tmp_path: Path, change: dict[str, str | None], variable: str, rule: str
) -> None:
    values = {**GOOD, **{k: v for k, v in change.items() if v is not None}}
    for k, v in change.items():
        if v is None:
            values.pop(k)
    cfg = env_config(
        tmp_path, SPEC, source="dotenv", file=str(write_dotenv(tmp_path / ".env", values))
    )
    result = run_checks(cfg)["env"]
    assert (rule, variable) in {(f.rule, f.subject) for f in result.findings}, result.findings
    assert_documented("env", result)  # docs/checks/env.md gives each of them this severity
    valid = {lab["variable"]: v for lab, v in result.samples["vigil_env_valid"]}
    assert valid[variable] == 0.0
    for value in change.values():
        if value:
            assert all(value not in f.message for f in result.findings)


def test_yaml_process_and_directory_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = [{"name": "PORT", "type": "port"}, {"name": "FLAG", "type": "bool"}]
    (tmp_path / "env.yml").write_text(yaml.safe_dump({"PORT": 70000, "FLAG": True}))
    result = run_checks(env_config(tmp_path, spec, source="yaml", file=str(tmp_path / "env.yml")))[
        "env"
    ]
    assert {(f.rule, f.subject) for f in result.findings} == {("invalid", "PORT")}

    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("FLAG", "maybe")
    result = run_checks(env_config(tmp_path, spec))["env"]
    assert {(f.rule, f.subject) for f in result.findings} == {("invalid", "FLAG")}

    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "db-password").write_text("changeme\n")
    spec2: list[dict[str, Any]] = [
        {"name": "DB_PASSWORD", "key": "db-password", "secret": True},
        {"name": "OTHER", "key": "other"},
    ]
    result = run_checks(env_config(tmp_path, spec2, source="directory", file=str(secrets_dir)))[
        "env"
    ]
    assert {(f.rule, f.subject) for f in result.findings} == {
        ("secret_placeholder", "DB_PASSWORD"),
        ("missing", "OTHER"),
    }


def test_unreadable_source_fails_the_check(tmp_path: Path) -> None:
    cfg = env_config(tmp_path, SPEC, source="dotenv", file=str(tmp_path / "nope.env"))
    result = run_checks(cfg)["env"]
    assert not result.success and "cannot read" in result.error


def test_baseline_drift_by_salted_hash(tmp_path: Path) -> None:
    env_file = write_dotenv(tmp_path / ".env", GOOD)
    baseline = tmp_path / "baseline.yml"
    cfg = env_config(
        tmp_path, SPEC, source="dotenv", file=str(env_file), baseline_file=str(baseline)
    )
    result = run_checks(cfg)["env"]
    assert "baseline_missing" in rules(result)

    write_baseline(cfg.targets[0].env)
    text = baseline.read_text()
    assert STRONG not in text and "8080" not in text and "info" not in text
    assert oct(baseline.stat().st_mode & 0o777) == "0o600"
    assert run_checks(cfg)["env"].findings == []

    write_dotenv(env_file, {**GOOD, "API_KEY": "Yp3k9LmR4xT9wK1pN6bYc3Hd", "TIMEOUT": "5s"})
    result = run_checks(cfg)["env"]
    drift = {f.subject for f in result.findings if f.rule == "drift"}
    assert drift == {"API_KEY", "TIMEOUT"}
    samples = {lab["variable"]: v for lab, v in result.samples["vigil_env_drift"]}
    assert samples["API_KEY"] == 1.0 and samples["PORT"] == 0.0

    # A variable added to the spec after the baseline was recorded is info, not drift.
    grown = env_config(
        tmp_path, [*SPEC, {"name": "REGION", "required": False}], source="dotenv",
        file=str(env_file), baseline_file=str(baseline),
    )
    result = run_checks(grown)["env"]
    assert ("baseline_unknown_variable", "REGION", "info") in {
        (f.rule, f.subject, f.severity.value) for f in result.findings
    }


def test_record_missing_baseline_trusts_first_use(tmp_path: Path) -> None:
    env_file = write_dotenv(tmp_path / ".env", GOOD)
    baseline = tmp_path / "b.yml"
    cfg = env_config(
        tmp_path,
        SPEC,
        source="dotenv",
        file=str(env_file),
        baseline_file=str(baseline),
        record_missing_baseline=True,
    )
    assert run_checks(cfg)["env"].findings == [] and baseline.exists()
    write_dotenv(env_file, {**GOOD, "PORT": "8081"})
    assert {f.subject for f in run_checks(cfg)["env"].findings if f.rule == "drift"} == {"PORT"}


def test_min_length_is_critical_for_values_and_a_warning_for_secrets(tmp_path: Path) -> None:
    """As docs/checks/env.md says: `invalid` (critical) for a plain value, `secret_weak`
    (warning) for a secret."""
    spec = [
        {"name": "REGION", "min_length": 8},
        {"name": "TOKEN", "secret": True, "min_length": 40},
    ]
    env_file = write_dotenv(tmp_path / ".env", {"REGION": "eu", "TOKEN": STRONG})
    result = run_checks(env_config(tmp_path, spec, source="dotenv", file=str(env_file)))["env"]
    found = {(f.rule, f.subject, f.severity.value) for f in result.findings}
    assert found == {("invalid", "REGION", "critical"), ("secret_weak", "TOKEN", "warning")}
    assert_documented("env", result)


def test_a_dotenv_file_the_app_loads_never_stops_the_check(tmp_path: Path) -> None:
    """python-dotenv accepts multi-line quoted values, spaces around `=`, dotted keys and bare
    keys; an unparsable line is a warning naming its number, and the rest is still judged."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# app settings\n"
        "export PORT = 8080\n"
        'CERT="-----BEGIN-----\nabc\n-----END-----"\n'
        "feature.flag=on\n"
        "LEGACY\n"
        'API_KEY="canary-unterminated\n'
        "LOG_LEVEL=verbose\n"
    )
    spec: list[dict[str, Any]] = [
        {"name": "PORT", "type": "port"},
        {"name": "CERT", "pattern": "(?s)-----BEGIN-----.*-----END-----"},
        {"name": "FLAG", "key": "feature.flag", "type": "bool"},
        {"name": "LOG_LEVEL", "type": "enum", "values": ["debug", "info"]},
    ]
    result = run_checks(env_config(tmp_path, spec, source="dotenv", file=str(env_file)))["env"]
    assert result.success, result.error
    found = {(f.rule, f.subject, f.severity.value) for f in result.findings}
    assert found == {("dotenv_unparsable", ".env", "warning"), ("invalid", "LOG_LEVEL", "critical")}
    unparsable = next(f for f in result.findings if f.rule == "dotenv_unparsable")
    assert "line(s) 8," in unparsable.message and "canary" not in unparsable.message
    assert_documented("env", result)
