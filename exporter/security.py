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
from urllib.parse import urljoin, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy
from vigil.exporter.base import CheckError, CheckResult, Finding, Severity
from vigil.exporter.config import SecurityConfig
from vigil.exporter.csp import CspAnalysis, analyse_csp
from vigil.exporter.observatory import (
    ObservatoryScore,
    hsts_max_age,
    referrer_policy,
    score_response,
)
from vigil.exporter.probe import HttpCheck, Probe, ProbeResponse, env_headers

__all__ = [
    "SecurityCheck",
    "analyse",
    "cert_days_left",
    "judge_cookies",
    "judge_csp",
    "judge_headers",
    "judge_isolation",
    "judge_redirect",
]

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
        age = hsts_max_age(h)
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
        elif age is None:
            out.append(
                Finding(
                    "hsts_invalid",
                    Severity.WARNING,
                    path,
                    "Strict-Transport-Security has no valid max-age, so browsers ignore it",
                    f"send Strict-Transport-Security: max-age={hsts_min_age}; includeSubDomains",
                )
            )
        elif age < hsts_min_age:
            out.append(
                Finding(
                    "hsts_short",
                    Severity.WARNING,
                    path,
                    f"Strict-Transport-Security max-age is {age}s, under {hsts_min_age}s",
                    f"raise max-age to at least {hsts_min_age} (six months; a year is common)",
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
    csp = analyse(resp, https)
    xfo = h.get("X-Frame-Options", "").strip().upper()
    if xfo not in ("DENY", "SAMEORIGIN") and not csp.framing_protected:
        broad = csp.frame_ancestors is not None
        out.append(
            Finding(
                "framing_unprotected",
                Severity.WARNING,
                path,
                (
                    "CSP frame-ancestors allows any site ("
                    + " ".join(csp.frame_ancestors or [])
                    + ") and X-Frame-Options does not forbid framing (clickjacking)"
                )
                if broad
                else "neither X-Frame-Options nor CSP frame-ancestors forbids framing "
                "(clickjacking)",
                "send Content-Security-Policy: frame-ancestors 'none' (or 'self'), "
                "or X-Frame-Options: DENY",
            )
        )
    out += judge_csp(csp, path, https)
    out += judge_isolation(h, path)
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


def analyse(resp: ProbeResponse, https: bool) -> CspAnalysis:
    return analyse_csp(
        resp.headers.getall("Content-Security-Policy", []),
        resp.headers.getall("Content-Security-Policy-Report-Only", []),
        https,
    )


_CSP_FIX = "see docs/checks/security.md; a strict start is default-src 'self'; object-src 'none'"


def judge_csp(csp: CspAnalysis, path: str, https: bool) -> list[Finding]:
    """Findings about the Content-Security-Policy, in the Observatory's terms."""
    if not csp.present:
        return [
            Finding(
                "csp_missing",
                Severity.WARNING,
                path,
                "no Content-Security-Policy"
                + (" (only Content-Security-Policy-Report-Only, which enforces nothing)"
                   if csp.report_only else "")
                + ", so an injected script runs with the page's rights",
                "send Content-Security-Policy, e.g. default-src 'self'; object-src 'none'; "
                "frame-ancestors 'none' (an API: default-src 'none'; frame-ancestors 'none')",
            )
        ]
    out: list[Finding] = []
    if not csp.script_restricted:
        out.append(
            Finding(
                "csp_scripts_unrestricted",
                Severity.WARNING,
                path,
                "the CSP sets neither script-src nor default-src, so scripts from anywhere run",
                "add default-src 'self' (or a script-src without broad sources)",
            )
        )
    else:
        if csp.unsafe_inline:
            out.append(
                Finding(
                    "csp_unsafe_inline",
                    Severity.WARNING,
                    path,
                    "the CSP allows inline scripts ('unsafe-inline' or data: in script-src, "
                    "without a nonce or hash), which defeats its protection against XSS",
                    "move inline scripts to files, or use nonces or hashes ('nonce-...'), and "
                    "drop 'unsafe-inline' and data: from script-src",
                )
            )
        if csp.broad_script:
            out.append(
                Finding(
                    "csp_broad_source",
                    Severity.WARNING,
                    path,
                    "script-src allows any host: " + " ".join(csp.broad_script),
                    "list the script origins you use instead of * or a bare scheme",
                )
            )
    if csp.unsafe_eval and csp.script_restricted:
        out.append(
            Finding(
                "csp_unsafe_eval",
                Severity.WARNING,
                path,
                "the CSP allows 'unsafe-eval', so strings can run as code (eval, new Function)",
                "remove eval() from the code, then 'unsafe-eval' from the CSP",
            )
        )
    if not csp.object_restricted:
        out.append(
            Finding(
                "csp_objects_unrestricted",
                Severity.WARNING,
                path,
                "the CSP sets neither object-src nor default-src, so plugins load from anywhere",
                "add object-src 'none'",
            )
        )
    elif csp.broad_object:
        out.append(
            Finding(
                "csp_broad_source",
                Severity.WARNING,
                f"{path} object-src",
                "object-src allows any host: " + " ".join(csp.broad_object),
                "set object-src 'none'",
            )
        )
    insecure = csp.insecure_active + csp.insecure_passive
    if https and insecure:
        out.append(
            Finding(
                "csp_insecure_source",
                Severity.WARNING if csp.insecure_active else Severity.INFO,
                path,
                "the CSP of an https page allows loading over plain http: " + " ".join(insecure),
                "use https: sources only",
            )
        )
    return out


_LEAKY_REFERRER = {"unsafe-url": Severity.WARNING, "no-referrer-when-downgrade": Severity.WARNING,
                   "origin": Severity.INFO, "origin-when-cross-origin": Severity.INFO}


def judge_isolation(h: CIMultiDictProxy[str] | CIMultiDict[str], path: str) -> list[Finding]:
    """Referrer-Policy, Cross-Origin-Opener-Policy and Cross-Origin-Resource-Policy."""
    out: list[Finding] = []
    policy = referrer_policy(h)
    if policy in _LEAKY_REFERRER:
        out.append(
            Finding(
                "referrer_policy_unsafe",
                _LEAKY_REFERRER[policy],
                path,
                f"Referrer-Policy {policy} sends "
                + ("the full URL (path and query) to other sites"
                   if _LEAKY_REFERRER[policy] is Severity.WARNING
                   else "this origin to every site, including over http"),
                "send Referrer-Policy: strict-origin-when-cross-origin (or no-referrer)",
            )
        )
    elif policy == "":
        out.append(
            Finding(
                "referrer_policy_invalid",
                Severity.INFO,
                path,
                "Referrer-Policy holds no value browsers recognise, so it is ignored",
                "send Referrer-Policy: strict-origin-when-cross-origin (or no-referrer)",
            )
        )
    coop = h.get("Cross-Origin-Opener-Policy", "").strip().lower()
    if coop not in ("same-origin", "same-origin-allow-popups", "noopener-allow-popups"):
        out.append(
            Finding(
                "coop_missing",
                Severity.INFO,
                path,
                "Cross-Origin-Opener-Policy is "
                + (coop if coop else "not set")
                + ", so a page this one opens (or that opens it) keeps a handle to its window",
                "send Cross-Origin-Opener-Policy: same-origin",
            )
        )
    corp = h.get("Cross-Origin-Resource-Policy")
    if corp is None:
        out.append(
            Finding(
                "corp_missing",
                Severity.INFO,
                path,
                "no Cross-Origin-Resource-Policy, so any site can embed this response "
                "(no-cors loads, Spectre-style leaks)",
                "send Cross-Origin-Resource-Policy: same-origin (or same-site)",
            )
        )
    elif corp.strip().lower() not in ("same-origin", "same-site", "cross-origin"):
        out.append(
            Finding(
                "corp_invalid",
                Severity.WARNING,
                path,
                "Cross-Origin-Resource-Policy holds a value browsers do not recognise",
                "send Cross-Origin-Resource-Policy: same-origin, same-site or cross-origin",
            )
        )
    return out


def judge_redirect(resp: ProbeResponse, http_url: str, https_url: str) -> tuple[
    list[Finding], tuple[str, int]
]:
    """Whether the plain-HTTP address redirects to https: findings and the Observatory's
    redirection result."""
    location = resp.headers.get("Location", "")
    target = urlsplit(urljoin(http_url + "/", location)) if location else None
    fix = "answer plain HTTP with a 301 to the same host on https://, then send HSTS"
    if not 300 <= resp.status < 400 or target is None:
        return [
            Finding(
                "https_redirect_missing",
                Severity.WARNING,
                http_url,
                f"plain HTTP answers {resp.status} instead of redirecting to https",
                fix,
            )
        ], ("redirection-missing", -20)
    if target.scheme != "https":
        return [
            Finding(
                "https_redirect_missing",
                Severity.WARNING,
                http_url,
                f"plain HTTP redirects to {target.scheme}://, not https://",
                fix,
            )
        ], ("redirection-not-to-https", -20)
    if target.hostname != urlsplit(https_url).hostname:
        return [
            Finding(
                "https_redirect_off_host",
                Severity.INFO,
                http_url,
                f"plain HTTP redirects to another host ({target.hostname}), so the HSTS of "
                "this host is never set on the first visit",
                "redirect to the same host on https:// first",
            )
        ], ("redirection-off-host-from-http", -5)
    return [], ("redirection-to-https", 0)


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


OBSERVATORY_ORIGIN = "https://http-observatory.security.mozilla.org"


class SecurityCheck(HttpCheck):
    """GET each configured path and judge headers and cookies; check the TLS certificate and
    the plain-HTTP redirect; score the first path on the HTTP Observatory's scale."""

    name = "security"
    cfg: SecurityConfig
    last_score: ObservatoryScore | None = None  # for tests and reports

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
            gets = [probe.request("GET", p, headers=headers, read_body=False) for p in cfg.paths]
            # The Observatory's CORS test: the first path, asked from a foreign origin.
            cors = probe.request(
                "GET", cfg.paths[0], headers={**headers, "Origin": OBSERVATORY_ORIGIN},
                read_body=False,
            )
            redirect = self._http_answer(deadline, cfg.paths[0])
            *responses, cors_resp, http_resp = await asyncio.gather(
                *gets, cors, redirect, return_exceptions=True
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
        redirection = ("redirection-not-needed-no-http", 0)
        http_url = self._http_url()
        if not https:
            redirection = ("redirection-missing", -20)  # an http site: nothing redirects
        elif http_url and isinstance(http_resp, ProbeResponse):
            found, redirection = judge_redirect(http_resp, http_url, self.base_url)
            result.findings += found
        elif http_url and cfg.http_url and isinstance(http_resp, BaseException):
            result.findings.append(
                Finding(
                    "probe_failed",
                    Severity.WARNING,
                    http_url,
                    str(http_resp),
                    "check that security.http_url answers plain HTTP",
                )
            )
        first = responses[0]
        if isinstance(first, ProbeResponse):
            score = score_response(
                first.headers,
                https=https,
                csp=analyse(first, https),
                cert_ok=not any(f.rule in ("tls_invalid", "tls_unreachable")
                                for f in result.findings),
                redirection=redirection,
                cors_headers=cors_resp.headers if isinstance(cors_resp, ProbeResponse) else None,
                cors_origin=OBSERVATORY_ORIGIN,
            )
            self.last_score = score
            result.add_sample(
                "vigil_security_observatory_score",
                {"target": self.target, "path": cfg.paths[0], "grade": score.grade},
                float(score.score),
            )
        return result

    def _http_url(self) -> str | None:
        """The plain-HTTP address to probe for the redirect (None: not probed)."""
        if self.cfg.http_url:
            return str(self.cfg.http_url)
        parts = urlsplit(self.base_url)
        if parts.scheme == "https" and parts.port in (None, 443):
            return f"http://{parts.hostname}"
        return None

    async def _http_answer(self, deadline: float, path: str) -> ProbeResponse | None:
        url = self._http_url()
        if url is None or not self.base_url.startswith("https:"):
            return None
        async with Probe(url, concurrency=1, deadline=deadline,
                         request_timeout=self.cfg.request_timeout) as probe:
            return await probe.request("GET", path, read_body=False)

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
