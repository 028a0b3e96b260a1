"""Compress the time of Prometheus rule files, so that a demo or scenario sees in seconds
what production sees in minutes.

With factor F, every `for`, range selector, subquery range and step, `offset`, the
look-ahead of `predict_linear`, and the thresholds of comparisons against clocks that run
compressed too (the forecaster's `*_eta_seconds`, whose horizon the demo compresses, and
`time() - *_timestamp_seconds` ages) are divided by F. Ranges are kept at least
`min_range` so that rate() still sees several samples at a 1 s scrape interval. Real-world
quantities, such as a TLS certificate's remaining seconds, are left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "format_duration",
    "parse_duration",
    "scale_alertmanager_config",
    "scale_expr",
    "scale_forecasts_config",
    "scale_rule_file",
    "scale_rule_groups",
]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"^(?:\d+(?:ms|[smhdwy]))+$")
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_RANGE = re.compile(r"\[\s*([0-9a-z]+)\s*(?::\s*([0-9a-z]*)\s*)?\]")
# Durations compared against a clock that runs compressed too: the forecaster's ETAs (its
# horizon is compressed) and `time() - <x>_timestamp_seconds` ages.
_NUMBER = r"([0-9][0-9.]*(?:\s*\*\s*[0-9][0-9.]*)*)"
_CLOCK_COMPARISONS = (
    re.compile(r"(_eta_seconds(?:\{[^}]*\})?\s*[<>]=?\s*)" + _NUMBER),
    re.compile(r"(time\(\)\s*-\s*[a-zA-Z_:]+_timestamp_seconds(?:\{[^}]*\})?\s*[<>]=?\s*)" + _NUMBER),
)
_OFFSET = re.compile(r"\boffset\s+(-?)([0-9]+(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)")


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as `1h30m` or `500ms`."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """A Prometheus duration for seconds, in whole milliseconds at worst."""
    ms = max(1, round(seconds * 1000))
    if ms % 1000:
        return f"{ms}ms"
    return f"{ms // 1000}s"


def _split_strings(expr: str) -> list[tuple[bool, str]]:
    """Split into (is_string_literal, text) pieces so we never rewrite inside a label value."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for match in _STRING.finditer(expr):
        out.append((False, expr[pos:match.start()]))
        out.append((True, match.group()))
        pos = match.end()
    out.append((False, expr[pos:]))
    return out


def _scale_code(code: str, factor: float, min_range: float) -> str:
    def rng(match: re.Match[str]) -> str:
        window = format_duration(max(min_range, parse_duration(match.group(1)) / factor))
        if match.group(2) is None:
            return f"[{window}]"
        step = match.group(2)
        return f"[{window}:{format_duration(parse_duration(step) / factor) if step else ''}]"

    def off(match: re.Match[str]) -> str:
        return f"offset {match.group(1)}{format_duration(parse_duration(match.group(2)) / factor)}"

    return _OFFSET.sub(off, _RANGE.sub(rng, code))


def _scale_predict_linear(expr: str, factor: float) -> str:
    """Divide predict_linear's look-ahead argument by factor: `(arg) / factor`."""
    out, pos = [], 0
    key = "predict_linear("
    while True:
        start = expr.find(key, pos)
        if start < 0:
            out.append(expr[pos:])
            return "".join(out)
        depth, i, comma = 1, start + len(key), -1
        in_str: str | None = None
        while i < len(expr) and depth:
            ch = expr[i]
            if in_str:
                if ch == "\\":
                    i += 1
                elif ch == in_str:
                    in_str = None
            elif ch in "\"'`":
                in_str = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            elif ch == "," and depth == 1:
                comma = i
            i += 1
        end = i - 1  # the closing parenthesis
        if comma < 0:
            out.append(expr[pos:end + 1])
        else:
            inner_first = _scale_predict_linear(expr[start + len(key):comma], factor)
            arg = expr[comma + 1:end].strip()
            out.append(expr[pos:start] + key + inner_first + f", ({arg}) / {factor:g})")
        pos = end + 1


def scale_expr(expr: str, factor: float, min_range: float = 4.0) -> str:
    """Scale the durations of one PromQL expression by 1/factor."""
    if factor == 1:
        return expr
    scaled = "".join(text if is_str else _scale_code(text, factor, min_range)
                     for is_str, text in _split_strings(expr))
    for pattern in _CLOCK_COMPARISONS:
        scaled = pattern.sub(lambda m: f"{m.group(1)}({m.group(2)}) / {factor:g}", scaled)
    return _scale_predict_linear(scaled, factor)


def scale_rule_groups(doc: dict[str, Any], factor: float, min_range: float = 4.0) -> dict[str, Any]:
    """Return a rule-file document with every expr and `for` scaled by 1/factor."""
    groups = []
    for group in doc.get("groups", []):
        group = dict(group)
        if "interval" in group:
            group["interval"] = format_duration(max(1.0, parse_duration(group["interval"]) / factor))
        rules = []
        for rule in group.get("rules", []):
            rule = dict(rule)
            rule["expr"] = scale_expr(str(rule["expr"]), factor, min_range)
            if "for" in rule:
                rule["for"] = format_duration(max(1.0, parse_duration(str(rule["for"])) / factor))
            rules.append(rule)
        group["rules"] = rules
        groups.append(group)
    return {**doc, "groups": groups}


def scale_rule_file(src: Path, dst: Path, factor: float, min_range: float = 4.0) -> Path:
    """Write a time-compressed copy of a rule file."""
    doc = yaml.safe_load(src.read_text()) or {}
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump(scale_rule_groups(doc, factor, min_range), sort_keys=False))
    return dst


_ROUTE_TIMERS = ("group_wait", "group_interval", "repeat_interval")


def scale_alertmanager_config(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    """Return an Alertmanager config with route timers and resolve_timeout divided by factor
    (group_interval and repeat_interval kept at least 1 s)."""

    def route(node: dict[str, Any]) -> dict[str, Any]:
        node = dict(node)
        for key in _ROUTE_TIMERS:
            if key in node:
                floor = 0.0 if key == "group_wait" else 1.0
                seconds = max(floor, parse_duration(str(node[key])) / factor)
                node[key] = format_duration(seconds) if seconds >= 0.001 else "0s"
        if "routes" in node:
            node["routes"] = [route(child) for child in node["routes"]]
        return node

    out = dict(doc)
    if "route" in out:
        out["route"] = route(out["route"])
    glob = dict(out.get("global") or {})
    if "resolve_timeout" in glob:
        glob["resolve_timeout"] = format_duration(
            max(1.0, parse_duration(str(glob["resolve_timeout"])) / factor))
        out["global"] = glob
    return out


_FORECAST_DURATIONS = ("history", "step", "horizon", "min_history", "retrain_interval")


def scale_forecasts_config(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    """Return a forecaster config with its cadence, windows and queries divided by factor
    (steps and intervals kept at least 1 s), for a demo running on compressed time."""
    out = dict(doc)
    if "interval" in out:
        out["interval"] = format_duration(max(1.0, parse_duration(str(out["interval"])) / factor))
    forecasts = []
    for forecast in out.get("forecasts", []):
        forecast = dict(forecast)
        for key in _FORECAST_DURATIONS:
            if key in forecast:
                floor = 1.0 if key in ("step", "retrain_interval") else 0.001
                forecast[key] = format_duration(
                    max(floor, parse_duration(str(forecast[key])) / factor))
        if "query" in forecast:
            forecast["query"] = scale_expr(str(forecast["query"]), factor)
        threshold = forecast.get("threshold")
        if isinstance(threshold, dict) and "query" in threshold:
            forecast["threshold"] = {**threshold, "query": scale_expr(str(threshold["query"]), factor)}
        forecasts.append(forecast)
    if "forecasts" in out:
        out["forecasts"] = forecasts
    return out
