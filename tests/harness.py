"""Helpers for tests that drive real components: polling, Prometheus queries, a webhook sink."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from vigil.procs import BinaryNotFound, find_binary
from vigil.sink import WebhookReceiver

__all__ = [
    "REPO_ROOT",
    "WebhookReceiver",
    "in_ci",
    "prom_alerts",
    "prom_query",
    "prom_value",
    "require_binary",
    "wait_for",
]

T = TypeVar("T")

# the checkout the tests run from (docs/, .ci/); what Vigil itself reads is in vigil.paths
REPO_ROOT = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of a binary; in CI a missing one fails the test, elsewhere it skips."""
    try:
        return find_binary(name)
    except BinaryNotFound as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.25,
             what: str = "condition") -> T:
    """Poll until predicate returns a truthy value; return it, or fail naming what we waited for."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def prom_query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """Instant query against a real Prometheus; returns the result vector."""
    resp = requests.get(f"{base_url}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def prom_value(base_url: str, expr: str) -> float | None:
    """The single value of an instant query, or None when it returns nothing."""
    result = prom_query(base_url, expr)
    if not result:
        return None
    return float(result[0]["value"][1])


def prom_alerts(base_url: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{base_url}/api/v1/alerts", timeout=5)
    resp.raise_for_status()
    return list(resp.json()["data"]["alerts"])
