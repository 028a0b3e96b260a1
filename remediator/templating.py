"""`${name}` substitution of validated parameters into step fields (never into SQL text)."""

from __future__ import annotations

from typing import Any

from vigil.remediator.config import TEMPLATE_RE

__all__ = ["render", "render_value"]


def render(text: str, params: dict[str, str]) -> str:
    """Replace `${name}` with params[name] (names are checked against declarations at load)."""
    return TEMPLATE_RE.sub(lambda m: params[m.group(1)], text)


def render_value(value: Any, params: dict[str, str]) -> Any:
    if isinstance(value, str):
        return render(value, params)
    if isinstance(value, dict):
        return {render(str(k), params): render_value(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, params) for v in value]
    return value
