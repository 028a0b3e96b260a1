"""Database URLs and engines the way Vigil wants them.

SQLAlchemy 2.1 maps a bare `postgresql://` URL to psycopg 3; Vigil depends on psycopg2,
so bare PostgreSQL URLs are pinned to that driver here, in one place.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

__all__ = ["create_engine", "normalize_url", "redact_url"]


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; bare postgresql:// and postgres:// use psycopg2."""
    parsed = url if isinstance(url, URL) else make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def create_engine(url: str | URL, **kwargs: Any) -> sa.Engine:
    """sqlalchemy.create_engine with normalize_url applied."""
    return sa.create_engine(normalize_url(url), **kwargs)


def redact_url(url: str | URL) -> str:
    """Render a URL for logs and errors with any password hidden."""
    try:
        return normalize_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as nothing, not echoed
        return "<unparsable database URL>"
