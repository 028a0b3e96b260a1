"""HTTP probing shared by the checks: one aiohttp session per check, kept across its runs so
scrapes reuse warm connections (recreated when closed), bounded in concurrency (a semaphore
and the connector limit) and in time (a deadline every request respects)."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from vigil.exporter.base import CheckError

__all__ = ["Probe", "ProbeError", "ProbeResponse", "env_headers"]

USER_AGENT = "vigil-exporter (+https://github.com/vigil)"
# A probe keeps at most this much of a response body (endpoints and journeys read bodies).
MAX_BODY_BYTES = 1 << 20


class ProbeError(CheckError):
    """One request failed (connection, timeout, deadline); the text names no value."""


@dataclass
class ProbeResponse:
    status: int
    headers: CIMultiDictProxy[str] | CIMultiDict[str]
    body: bytes
    elapsed: float

    def header_list(self, name: str) -> list[str]:
        """Comma-separated values of every instance of a header, stripped, empties dropped."""
        out: list[str] = []
        for raw in self.headers.getall(name, []):
            out += [part.strip() for part in raw.split(",") if part.strip()]
        return out


def env_headers(
    from_env: dict[str, str], from_file: dict[str, str] | None = None
) -> dict[str, str]:
    """Headers whose values come from environment variables or files (a secret store mount);
    a missing source is a CheckError that names the variable or file, never a value."""
    out: dict[str, str] = {}
    for header, var in from_env.items():
        value = os.environ.get(var)
        if value is None:
            raise CheckError(f"environment variable {var} (for header {header}) is not set")
        out[header] = value
    for header, path in (from_file or {}).items():
        try:
            out[header] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CheckError(
                f"cannot read {path} (for header {header}): "
                f"{exc.strerror or exc.__class__.__name__}"
            ) from None
    return out


# Idle keep-alive connections are dropped before common server timeouts (uvicorn: 5 s), so a
# reused connection is rarely one the server is closing at that moment.
KEEPALIVE_SECONDS = 4.0


def _new_session(concurrency: int, ssl_context: ssl.SSLContext | None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=concurrency,
        ssl=ssl_context if ssl_context else True,
        keepalive_timeout=KEEPALIVE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        raise_for_status=False,
    )


class SessionPool:
    """One aiohttp session kept across a check's runs, so scrapes reuse warm connections
    instead of opening dozens of new ones each time. Owned by the check; `close()` it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self, concurrency: int, ssl_context: ssl.SSLContext | None) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = _new_session(concurrency, ssl_context)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class Probe:
    """`async with Probe(base_url, ...) as probe: await probe.request(...)`.

    With a `pool`, the session (and its connections) outlives the run; without, it is
    closed on exit.
    """

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int,
        deadline: float,
        request_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        pool: SessionPool | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline  # time.monotonic() value
        self.request_timeout = request_timeout
        self._sem = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        if ssl_context is None and ca_file and base_url.startswith("https:"):
            ssl_context = ssl.create_default_context(cafile=ca_file)
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._pool = pool
        self.in_flight = 0
        self.max_in_flight = 0  # observed, for tests and the benchmark
        self.requests = 0

    async def __aenter__(self) -> Self:
        if self._pool is not None:
            self._session = self._pool.get(self._concurrency, self._ssl)
        else:
            self._session = _new_session(self._concurrency, self._ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None and self._pool is None:
            await self._session.close()

    def url(self, path: str) -> str:
        return self.base_url + path

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        timeout: float | None = None,
        read_body: bool = True,
    ) -> ProbeResponse:
        """Send one request without following redirects; raise ProbeError on failure."""
        assert self._session is not None, "use Probe as an async context manager"
        async with self._sem:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError("check time budget exhausted before the request was sent")
            limit = min(timeout or self.request_timeout, remaining)
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            start = time.perf_counter()
            try:
                async with self._session.request(
                    method,
                    self.url(path),
                    headers=headers,
                    json=json,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as resp:
                    body = (await _read_capped(resp, MAX_BODY_BYTES)
                            if read_body and method != "HEAD" else b"")
                    return ProbeResponse(
                        resp.status, resp.headers, body, time.perf_counter() - start
                    )
            except TimeoutError:
                raise ProbeError(f"{method} {path}: no answer within {limit:.2f}s") from None
            except aiohttp.ClientSSLError as exc:
                raise ProbeError(f"{method} {path}: TLS error: {_ssl_reason(exc)}") from None
            except aiohttp.ClientError as exc:
                raise ProbeError(f"{method} {path}: {exc.__class__.__name__}") from None
            finally:
                self.in_flight -= 1


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body; the rest is never read, so an endless or huge
    body cannot fill memory (checks look at the start of a body only)."""
    data = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def _ssl_reason(exc: Exception) -> str:
    inner = getattr(exc, "os_error", None) or getattr(exc, "__cause__", None)
    reason = getattr(inner, "reason", None) or getattr(inner, "verify_message", None)
    return str(reason or exc.__class__.__name__)


class HttpCheck:
    """What every HTTP-probing check of one target holds: the target's address, CA file and
    header credentials, its config, and a kept-alive session pool reused across scrapes
    (closed by the runner through aclose)."""

    name = ""

    def __init__(self, target: Any, cfg: Any) -> None:
        self.target: str = target.name
        self.base_url: str = target.base_url
        self.ca_file = target.tls_ca_file
        self.auth = (target.headers_from_env, target.headers_from_file)
        self.sessions = SessionPool()
        self.cfg = cfg
        self.min_interval: float = cfg.min_interval

    async def aclose(self) -> None:
        """Close the kept-alive session (the runner calls this on shutdown)."""
        await self.sessions.close()

    def probe(self, *, deadline: float, concurrency: int, request_timeout: float) -> Probe:
        """A Probe of this target on the kept-alive session pool."""
        return Probe(self.base_url, ca_file=self.ca_file, pool=self.sessions,
                     concurrency=concurrency, deadline=deadline, request_timeout=request_timeout)
