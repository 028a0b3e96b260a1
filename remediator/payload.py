"""Parse and validate an Alertmanager webhook payload (version 4) with precise error messages."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["ParsedAlert", "ParsedNotification", "PayloadError", "parse_payload", "parse_time"]

_TIME_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")
MAX_LABEL_BYTES = 16384


class PayloadError(ValueError):
    """The payload is not a valid version-4 webhook notification; the text says where."""


@dataclass(frozen=True)
class ParsedAlert:
    status: str
    fingerprint: str
    starts_at: datetime
    ends_at: datetime | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "fingerprint": self.fingerprint, "labels": self.labels,
                "annotations": self.annotations}


@dataclass(frozen=True)
class ParsedNotification:
    receiver: str
    status: str
    group_key: str
    alerts: list[ParsedAlert]
    raw: dict[str, Any]


def parse_time(value: Any, where: str) -> datetime:
    """RFC 3339 with up to nanoseconds (Alertmanager's format), as aware UTC."""
    if not isinstance(value, str):
        raise PayloadError(f"{where}: expected an RFC 3339 timestamp string")
    m = _TIME_RE.fullmatch(value)
    if not m:
        raise PayloadError(f"{where}: invalid RFC 3339 timestamp")
    date, clock, frac, zone = m.groups()
    frac6 = (frac or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}.{frac6}{zone}")
    except ValueError:
        raise PayloadError(f"{where}: invalid RFC 3339 timestamp") from None
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 or 0001-01-01T00:00:00+01:00
        raise PayloadError(f"{where}: timestamp out of range") from None


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where}: expected an object of strings")
    size = 0
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadError(f"{where}.{k}: expected a string")
        size += len(k) + len(v)
    if size > MAX_LABEL_BYTES:
        raise PayloadError(f"{where}: larger than {MAX_LABEL_BYTES} bytes")
    return value


def _parse_alert(a: Any, where: str) -> ParsedAlert:
    if not isinstance(a, dict):
        raise PayloadError(f"{where}: expected an object")
    status = a.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status: expected 'firing' or 'resolved'")
    fingerprint = a.get("fingerprint")
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-fA-F]{1,64}", fingerprint):
        raise PayloadError(f"{where}.fingerprint: expected a hexadecimal string of 1-64 characters")
    labels = _str_map(a.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        raise PayloadError(f"{where}.labels.alertname: missing")
    if len(labels["alertname"]) > MAX_NAME_CHARS:
        raise PayloadError(f"{where}.labels.alertname: longer than {MAX_NAME_CHARS} characters")
    starts_at = parse_time(a.get("startsAt"), f"{where}.startsAt")
    ends_raw = a.get("endsAt")
    ends_at = None
    if ends_raw not in (None, ""):
        ends_at = parse_time(ends_raw, f"{where}.endsAt")
        if ends_at.year <= 1:  # Alertmanager's zero time: no end yet
            ends_at = None
    gen = a.get("generatorURL", "")
    if not isinstance(gen, str):
        raise PayloadError(f"{where}.generatorURL: expected a string")
    return ParsedAlert(status, fingerprint.lower(), starts_at, ends_at, labels,
                       _str_map(a.get("annotations"), f"{where}.annotations"), gen)


MAX_NAME_CHARS = 255  # receiver and alertname are varchar(255) in the store


def _check_text(body: Any) -> None:
    """Refuse what no text/jsonb column can store: NUL, lone surrogates, NaN and infinities.

    Iterative, so a deeply nested body cannot exhaust the interpreter's recursion limit.
    """
    stack: list[tuple[str, Any]] = [("payload", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            _check_string(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, where)
                stack.append((f"{where}.{key}" if len(where) < 200 else where, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]" if len(where) < 200 else where, item)
                         for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise PayloadError(f"{where}: not a finite number")


def _check_string(value: str, where: str) -> None:
    if "\x00" in value:
        raise PayloadError(f"{where}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{where}: contains a lone surrogate (not valid Unicode)") from None


def parse_payload(body: Any) -> ParsedNotification:
    """Validate a decoded JSON body; raise PayloadError naming the first bad field."""
    if not isinstance(body, dict):
        raise PayloadError("payload: expected a JSON object")
    _check_text(body)
    version = body.get("version")
    if version != "4":
        raise PayloadError("version: expected \"4\" (Alertmanager webhook payload version 4)")
    status = body.get("status")
    if status not in ("firing", "resolved"):
        raise PayloadError("status: expected 'firing' or 'resolved'")
    for key in ("receiver", "groupKey"):
        if not isinstance(body.get(key), str):
            raise PayloadError(f"{key}: expected a string")
    if len(body["receiver"]) > MAX_NAME_CHARS:
        raise PayloadError(f"receiver: longer than {MAX_NAME_CHARS} characters")
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("alerts: expected a list")
    if len(alerts) > 10000:
        raise PayloadError("alerts: more than 10000 alerts in one notification")
    parsed = [_parse_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts)]
    return ParsedNotification(body["receiver"], status, body["groupKey"], parsed, body)
