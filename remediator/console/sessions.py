"""Console sessions: sign-in with the admin credentials, an opaque cookie, a CSRF token.

A session is a random id (the cookie) mapped in memory to the principal, a CSRF token and an
expiry; nothing secret is derived from the admin token, and the token itself is never kept.
Sessions live in the replica that issued them (sign in again after a restart).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "LOGIN_COOKIE", "Session", "Sessions"]

COOKIE = "vigil_console"
# the sign-in form's own CSRF token travels in this cookie and in the form (double submit)
LOGIN_COOKIE = "vigil_console_login"


@dataclass
class Session:
    principal: str
    csrf: str
    expires: float

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, ttl: float = 8 * 3600, limit: int = 1000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._by_id: dict[str, Session] = {}

    def create(self, principal: str) -> tuple[str, Session]:
        self._expire()
        while len(self._by_id) >= self.limit:  # the oldest goes first
            self._by_id.pop(next(iter(self._by_id)))
        sid = secrets.token_urlsafe(32)
        session = Session(principal, secrets.token_urlsafe(32), time.monotonic() + self.ttl)
        self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._by_id.get(sid)
        if session is None or session.expires < time.monotonic():
            self._by_id.pop(sid, None)
            return None
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, v in self._by_id.items() if v.expires < now]:
            del self._by_id[sid]
