"""The demo target's configuration: CORS, security headers and limits, loaded from YAML."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from vigil.config import StrictModel, load_yaml, parse_model

__all__ = ["DEFAULT_CONFIG", "CorsConfig", "DemoConfig", "deep_merge", "load_config"]


class CorsConfig(StrictModel):
    allow_origins: list[str] = ["https://app.example.com", "https://admin.example.com"]
    allow_methods: list[str] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    allow_headers: list[str] = ["Content-Type", "Authorization", "X-API-Key"]
    allow_credentials: bool = True
    max_age: int = Field(600, ge=0)
    # Deliberate misconfigurations, so the exporter's CORS check has something to find.
    reflect_any_origin: bool = False
    allow_null_origin: bool = False
    vary_origin: bool = True
    methods_case: Literal["upper", "lower"] = "upper"
    preflight_status: int = Field(204, ge=100, le=599)


class CookieConfig(StrictModel):
    secure: bool = True
    http_only: bool = True
    same_site: Literal["Strict", "Lax", "None", ""] = "Lax"


class LimitsConfig(StrictModel):
    memory_limit_bytes: int = Field(512 * 1024 * 1024, gt=0)
    disk_capacity_bytes: int = Field(256 * 1024 * 1024, gt=0)


class DemoConfig(StrictModel):
    cors: CorsConfig = CorsConfig()
    security_headers: dict[str, str] = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    server_header: str = ""
    session_cookie: CookieConfig = CookieConfig()
    limits: LimitsConfig = LimitsConfig()
    db_pool_size: int = Field(5, ge=1, le=100)


DEFAULT_CONFIG = DemoConfig()


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Return base with patch merged in, recursively for nested mappings."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str | Path) -> DemoConfig:
    """Load a demo-target config file (missing keys take the embedded defaults)."""
    return parse_model(DemoConfig, load_yaml(path), path)
