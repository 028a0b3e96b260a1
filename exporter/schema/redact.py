"""Keep database credentials out of metrics, logs and error messages."""

from __future__ import annotations

import contextlib
import re
import threading

__all__ = ["Redactor", "redact_url", "scrub"]

# scheme://user:password@host -> scheme://user:***@host, for URLs we were never told about
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)@")
# libpq keyword form: password=secret
_KW_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")


def redact_url(url: str) -> str:
    """Render a database URL with its password (and any password query parameter) hidden."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        query = {k: ("***" if "password" in k.lower() else v) for k, v in parsed.query.items()}
        return parsed.set(query=query).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: fall back to the regex
        return scrub(url)


def scrub(text: str) -> str:
    """Hide passwords in any URL or libpq keyword string inside text."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)
    return _KW_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)


class Redactor:
    """Remember the secrets of the URLs in use and scrub them from any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add_url(self, url: str) -> None:
        """Remember a URL, its password and its redacted form's counterpart."""
        from sqlalchemy.engine import make_url

        secrets = {url}
        with contextlib.suppress(Exception):  # unparsable: the whole URL is still scrubbed
            parsed = make_url(url)
            if parsed.password:
                secrets.add(str(parsed.password))
            for key, value in parsed.query.items():
                if "password" in key.lower():
                    secrets.update([value] if isinstance(value, str) else list(value))
        with self._lock:
            self._secrets.update(s for s in secrets if len(s) >= 3)

    def __call__(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, redact_url(secret) if "://" in secret else "***")
        return scrub(text)

    def describe(self, exc: BaseException) -> str:
        """One safe line naming an exception: its type and the first line of its message."""
        from vigil.config import ConfigError

        if isinstance(exc, ConfigError):
            return self(f"config error: {exc}")
        text = str(exc).strip().splitlines()
        first = text[0].strip() if text else ""
        # SQLAlchemy wraps driver errors as "(psycopg2.OperationalError) connection ..."
        first = re.sub(r"^\([\w.]+\)\s*", "", first)
        name = type(exc).__name__
        return self(f"{name}: {first}" if first else name)
