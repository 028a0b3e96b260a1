"""The CORS check against the demo target over real HTTP: each misconfiguration is found when
injected (through the target's config) and gone once the baseline config is restored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from vigil.demo.client import DemoTarget

from tests.exporter.helpers import demo_config, restore_target, rules, run_checks

APP = "https://app.example.com"

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, fault, expected rule, expected subject prefix)
    ("patch-dropped", {"cors_drift": True}, "method_refused", f"{APP} PATCH"),
    (
        "wildcard-with-credentials",
        {"config_patch": {"cors": {"allow_origins": ["*"]}}},
        "wildcard_with_credentials",
        APP,
    ),
    (
        "reflects-any-origin",
        {"config_patch": {"cors": {"reflect_any_origin": True}}},
        "origin_reflected",
        "*",
    ),
    (
        "null-origin",
        {"config_patch": {"cors": {"allow_null_origin": True}}},
        "null_origin_trusted",
        "null",
    ),
    (
        "vary-missing",
        {"config_patch": {"cors": {"vary_origin": False}}},
        "vary_origin_missing",
        APP,
    ),
    (
        "methods-lowercase",
        {"config_patch": {"cors": {"methods_case": "lower"}}},
        "methods_case_mismatch",
        f"{APP} PATCH",
    ),
    (
        "preflight-not-2xx",
        {"config_patch": {"cors": {"preflight_status": 500}}},
        "preflight_not_2xx",
        APP,
    ),
    (
        "outside-allowlist",
        {
            "config_patch": {
                "cors": {
                    "allow_origins": [APP, "https://admin.example.com", "https://evil.example.net"]
                }
            }
        },
        "origin_outside_allowlist",
        "https://evil.example.net",
    ),
    (
        "header-refused",
        {"config_patch": {"cors": {"allow_headers": ["Content-Type"]}}},
        "header_refused",
        f"{APP} PATCH X-API-Key",
    ),
]


@pytest.mark.parametrize(
    ("fault", "rule", "subject"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_cors_misconfiguration_detected_then_clean(
    shared_demo_target: DemoTarget, tmp_path: Path, fault: dict[str, Any], rule: str, subject: str
) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("cors",))
    clean = run_checks(config)["cors"]
    assert clean.success and clean.findings == [], clean.findings

    shared_demo_target.inject(**fault)
    broken = run_checks(config)["cors"]
    assert broken.success, broken.error
    hits = [f for f in broken.findings if f.rule == rule]
    assert hits, f"{rule} not reported; got {rules(broken)}"
    assert any(f.subject.startswith(subject) for f in hits), [f.subject for f in hits]
    assert all(f.fix for f in broken.findings)

    restore_target(shared_demo_target)
    again = run_checks(config)["cors"]
    assert again.findings == [], again.findings


def test_preflight_matrix_samples(shared_demo_target: DemoTarget, tmp_path: Path) -> None:
    config = demo_config(shared_demo_target, tmp_path, only=("cors",))
    shared_demo_target.inject(cors_drift=True)
    result = run_checks(config)["cors"]
    matrix = {
        (lab["origin"], lab["method"]): v
        for lab, v in result.samples["vigil_cors_preflight_allowed"]
    }
    assert len(matrix) == 2 * 7  # every configured origin x every method
    assert matrix[(APP, "PATCH")] == 0.0
    assert matrix[(APP, "PUT")] == 1.0
    assert matrix[("https://admin.example.com", "DELETE")] == 1.0
