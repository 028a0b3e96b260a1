"""The security-configuration check: HSTS, nosniff, framing, cookie flags, version disclosure
and the TLS certificate's remaining lifetime."""

from __future__ import annotations

import asyncio
import re
import ssl
import tempfile
import time
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

from vigil.exporter.base import CheckError, CheckResult, Finding, Severity
from vigil.exporter.config import SecurityConfig
from vigil.exporter.probe import HttpCheck, Probe, ProbeResponse, env_headers

__all__ = ["SecurityCheck", "cert_days_left", "judge_cookies", "judge_headers"]

_DISCLOSURE = (
    "X-Powered-By",
    "X-AspNet-Version",
    "X-AspNetMvc-Version",
    "X-Runtime",
    "X-Generator",
)
_VERSION = re.compile(r"\d+\.\d+")


def judge_headers(resp: ProbeResponse, path: str, https: bool, hsts_min_age: int) -> list[Finding]:
    """Findings about one response's security headers."""
    out: list[Finding] = []
    h = resp.headers
    if https:
        hsts = h.get("Strict-Transport-Security")
        if hsts is None:
            out.append(
                Finding(
                    "hsts_missing",
                    Severity.WARNING,
                    path,
                    "HTTPS response without Strict-Transport-Security",
                    f"send Strict-Transport-Security: max-age={hsts_min_age}; includeSubDomains",
                )
            )
        else:
            match = re.search(r"max-age\s*=\s*\"?(\d+)", hsts, re.IGNORECASE)
            if match is None or int(match.group(1)) < hsts_min_age:
                out.append(
                    Finding(
                        "hsts_short",
                        Severity.INFO,
                        path,
                        f"Strict-Transport-Security max-age is under {hsts_min_age}s",
                        f"raise max-age to at least {hsts_min_age}",
                    )
                )
    if h.get("X-Content-Type-Options", "").strip().lower() != "nosniff":
        out.append(
            Finding(
                "nosniff_missing",
                Severity.WARNING,
                path,
                "X-Content-Type-Options: nosniff is missing",
                "send X-Content-Type-Options: nosniff on every response",
            )
        )
    xfo = h.get("X-Frame-Options", "").strip().upper()
    csp = " ".join(h.getall("Content-Security-Policy", [])).lower()
    if xfo not in ("DENY", "SAMEORIGIN") and "frame-ancestors" not in csp:
        out.append(
            Finding(
                "framing_unprotected",
                Severity.WARNING,
                path,
                "neither X-Frame-Options nor CSP frame-ancestors forbids framing (clickjacking)",
                "send Content-Security-Policy: frame-ancestors 'none' (or 'self'), "
                "or X-Frame-Options: DENY",
            )
        )
    server = h.get("Server", "")
    if _VERSION.search(server):
        out.append(
            Finding(
                "version_disclosed",
                Severity.INFO,
                "Server",
                "the Server header discloses software versions",
                "drop versions from the Server header (or the header entirely)",
            )
        )
    for name in _DISCLOSURE:
        if name in h:
            out.append(
                Finding(
                    "version_disclosed",
                    Severity.INFO,
                    name,
                    f"the {name} header discloses the software stack",
                    f"stop sending {name}",
                )
            )
    return out


def judge_cookies(resp: ProbeResponse, https: bool, readable_by_js: list[str]) -> list[Finding]:
    """Findings about the Set-Cookie headers of one response (cookie names only, no values)."""
    out: list[Finding] = []
    for raw in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # noqa: BLE001 - an unparsable cookie is reported, never echoed
            out.append(
                Finding(
                    "cookie_unparsable",
                    Severity.INFO,
                    "Set-Cookie",
                    "a Set-Cookie header could not be parsed",
                    "send RFC 6265 cookies",
                )
            )
            continue
        for name, morsel in jar.items():
            secure = bool(morsel["secure"])
            samesite = str(morsel["samesite"]).strip().lower()
            if not secure:
                out.append(
                    Finding(
                        "cookie_not_secure",
                        Severity.WARNING,
                        name,
                        f"cookie {name} lacks the Secure flag",
                        f"set Secure on {name} so it never travels over plain HTTP",
                    )
                )
            if not morsel["httponly"] and name not in readable_by_js:
                out.append(
                    Finding(
                        "cookie_not_httponly",
                        Severity.WARNING,
                        name,
                        f"cookie {name} lacks HttpOnly, so scripts can read it",
                        f"set HttpOnly on {name} (or list it in security.cookies_readable_by_js)",
                    )
                )
            if samesite not in ("lax", "strict", "none"):
                out.append(
                    Finding(
                        "cookie_samesite_missing",
                        Severity.INFO,
                        name,
                        f"cookie {name} has no SameSite attribute",
                        f"set SameSite=Lax (or Strict) on {name}",
                    )
                )
            elif samesite == "none" and not secure:
                out.append(
                    Finding(
                        "cookie_samesite_none_insecure",
                        Severity.WARNING,
                        name,
                        f"cookie {name} has SameSite=None without Secure; browsers reject it",
                        f"add Secure to {name}",
                    )
                )
    return out


def _decode_der(der: bytes) -> dict:
    """Decode a DER certificate with the ssl module's own parser (no extra dependency)."""
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as tmp:
        tmp.write(ssl.DER_cert_to_PEM_cert(der))
    try:
        return ssl._ssl._test_decode_cert(tmp.name)  # type: ignore[attr-defined]
    finally:
        Path(tmp.name).unlink(missing_ok=True)


async def cert_days_left(
    host: str, port: int, ca_file: str | None, timeout: float
) -> tuple[float, str | None]:
    """(days until notAfter, verification error or None) of the server's leaf certificate."""
    ctx = ssl.create_default_context(cafile=ca_file)
    verify_error: str | None = None
    der: bytes | None = None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), timeout
        )
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
    except ssl.SSLCertVerificationError as exc:
        verify_error = str(exc.verify_message or "certificate verification failed")
    except (TimeoutError, OSError) as exc:
        raise CheckError(
            f"TLS connection to {host}:{port} failed: {exc.__class__.__name__}"
        ) from None
    if der is None:
        loose = ssl.create_default_context()
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=loose, server_hostname=host), timeout
            )
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            writer.close()
        except (TimeoutError, OSError) as exc:
            raise CheckError(
                f"TLS connection to {host}:{port} failed: {exc.__class__.__name__}"
            ) from None
    if der is None:
        raise CheckError(f"{host}:{port} presented no certificate")
    not_after = _decode_der(der)["notAfter"]
    return (ssl.cert_time_to_seconds(not_after) - time.time()) / 86400.0, verify_error


class SecurityCheck(HttpCheck):
    """GET each configured path and judge headers and cookies; check the TLS certificate."""

    name = "security"
    cfg: SecurityConfig

    async def __call__(self, timeout: float) -> CheckResult:
        cfg = self.cfg
        result = CheckResult(self.target, self.name, success=True)
        parts = urlsplit(self.base_url)
        https = parts.scheme == "https"
        deadline = time.monotonic() + timeout
        headers = env_headers(*self.auth)
        ctx: ssl.SSLContext | None = None
        if https:
            assert parts.hostname is not None
            try:
                days, verify_error = await cert_days_left(
                    parts.hostname,
                    parts.port or 443,
                    self.ca_file,
                    min(timeout, cfg.request_timeout),
                )
            except CheckError as exc:
                result.findings.append(
                    Finding(
                        "tls_unreachable",
                        Severity.CRITICAL,
                        parts.netloc,
                        str(exc),
                        "check the TLS listener",
                    )
                )
            else:
                self._judge_tls(result, parts.netloc, days, verify_error)
                if verify_error:
                    # Already reported as tls_invalid; still judge the headers behind it.
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
        async with Probe(
            self.base_url,
            concurrency=4,
            deadline=deadline,
            request_timeout=cfg.request_timeout,
            ssl_context=ctx,
            ca_file=self.ca_file,
        ) as probe:
            responses = await asyncio.gather(
                *(probe.request("GET", p, headers=headers, read_body=False) for p in cfg.paths),
                return_exceptions=True,
            )
        seen: set[tuple[str, str]] = set()
        failures = [r for r in responses if isinstance(r, BaseException)]
        if failures and len(failures) == len(responses):
            raise CheckError(f"no path answered: {failures[0]}")
        for path, resp in zip(cfg.paths, responses, strict=True):
            if isinstance(resp, BaseException):
                result.findings.append(
                    Finding(
                        "probe_failed",
                        Severity.WARNING,
                        path,
                        str(resp),
                        "check that the path is reachable",
                    )
                )
                continue
            for finding in judge_headers(
                resp, path, https, cfg.hsts_min_age_seconds
            ) + judge_cookies(resp, https, cfg.cookies_readable_by_js):
                key = (finding.rule, finding.subject)
                if key not in seen:  # one finding per rule and subject across paths
                    seen.add(key)
                    result.findings.append(finding)
        return result

    def _judge_tls(
        self, result: CheckResult, host: str, days: float, verify_error: str | None
    ) -> None:
        cfg = self.cfg
        result.add_sample(
            "vigil_tls_cert_remaining_seconds",
            {"target": self.target, "host": host},
            days * 86400.0,
        )
        if verify_error:
            result.findings.append(
                Finding(
                    "tls_invalid",
                    Severity.CRITICAL,
                    host,
                    f"the certificate does not verify: {verify_error}",
                    "serve a certificate chain that verifies for this host name (or set "
                    "the target's tls_ca_file for a private CA)",
                )
            )
        if days <= 0:
            result.findings.append(
                Finding(
                    "tls_expired",
                    Severity.CRITICAL,
                    host,
                    "the TLS certificate has expired",
                    "renew it now",
                )
            )
        elif days < cfg.tls_critical_days:
            result.findings.append(
                Finding(
                    "tls_expiring",
                    Severity.CRITICAL,
                    host,
                    f"the TLS certificate expires in {days:.1f} days",
                    "renew the certificate",
                )
            )
        elif days < cfg.tls_warning_days:
            result.findings.append(
                Finding(
                    "tls_expiring",
                    Severity.WARNING,
                    host,
                    f"the TLS certificate expires in {days:.1f} days",
                    "renew the certificate (automate it, e.g. ACME)",
                )
            )
