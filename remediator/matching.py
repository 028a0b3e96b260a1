"""Match an alert to a procedure and extract its parameters, validated by declared patterns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil.remediator.config import Procedure, RemediatorConfig

__all__ = ["Match", "ParamRefused", "match_alert"]


class ParamRefused(ValueError):
    """A parameter is missing or does not fully match its declared pattern."""


@dataclass
class Match:
    procedure: Procedure | None
    params: dict[str, str] = field(default_factory=dict)
    refused: str = ""  # why the parameters were refused ("" when accepted)
    target: str = ""


def extract_params(proc: Procedure, labels: dict[str, str], annotations: dict[str, str],
                   fingerprint: str) -> dict[str, str]:
    """Return validated params; raise ParamRefused naming the parameter (never its value)."""
    params: dict[str, str] = {"alertname": labels.get("alertname", ""), "fingerprint": fingerprint}
    for name, spec in proc.params.items():
        source, key = ("label", spec.label) if spec.label is not None else ("annotation", spec.annotation)
        value = (labels if source == "label" else annotations).get(key or "")
        if value is None:
            if spec.default is None:
                raise ParamRefused(f"parameter {name!r}: {source} {key!r} is missing")
            value = spec.default
        if "\x00" in value or re.fullmatch(spec.pattern, value) is None:
            raise ParamRefused(f"parameter {name!r}: {source} {key!r} does not match the declared "
                               f"pattern {spec.pattern!r}")
        params[name] = value
    if not re.fullmatch(r"[0-9a-fA-F]{1,64}", fingerprint):
        raise ParamRefused("fingerprint is not hexadecimal")
    return params


def match_alert(config: RemediatorConfig, alert: dict[str, Any]) -> Match:
    """The first procedure whose matchers all hold, with parameters (or why they were refused)."""
    labels: dict[str, str] = alert.get("labels") or {}
    annotations: dict[str, str] = alert.get("annotations") or {}
    for proc in config.procedures:
        if all(m.matches(labels) for m in proc.match):
            try:
                params = extract_params(proc, labels, annotations, str(alert.get("fingerprint", "")))
            except ParamRefused as exc:
                return Match(proc, {}, str(exc))
            return Match(proc, params, "", proc.cooldown_key({**config.constants, **params}))
    return Match(None)
