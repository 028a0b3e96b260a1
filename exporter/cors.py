"""The CORS check: a real preflight for every origin x method, judged the way a browser does.

The verdict logic follows the Fetch standard's CORS check and CORS-preflight fetch: the
allowed origin must match exactly (`*` never matches a credentialed request), methods are
compared case-sensitively, header names case-insensitively, and `*` in the method or header
list counts only for requests without credentials (and never covers Authorization).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from vigil.exporter.base import CheckResult, Finding, Severity
from vigil.exporter.config import CorsConfig, TargetConfig
from vigil.exporter.probe import HttpCheck, Probe, ProbeError, ProbeResponse

__all__ = [
    "PROBE_KINDS",
    "SAFELISTED_METHODS",
    "CorsCheck",
    "PreflightVerdict",
    "judge_actual",
    "judge_preflight",
    "needs_preflight",
    "probe_origins_for",
]

SAFELISTED_METHODS = frozenset({"GET", "HEAD", "POST"})
# Request headers a browser sends without a preflight (Content-Type only for form/text types).
SAFELISTED_HEADERS = frozenset({"accept", "accept-language", "content-language"})


@dataclass
class PreflightVerdict:
    """What a browser would conclude from one preflight response."""

    allowed: bool
    status_ok: bool = True
    origin_ok: bool = True
    method_ok: bool = True
    case_mismatch: bool = False
    refused_headers: list[str] = field(default_factory=list)
    wildcard_with_credentials: bool = False
    vary_missing: bool = False
    reason: str = ""


def _origin_verdict(resp: ProbeResponse, origin: str, credentials: bool) -> tuple[bool, str, bool]:
    """(origin allowed, reason, wildcard-with-credentials seen)."""
    acao = resp.headers.getall("Access-Control-Allow-Origin", [])
    acac = resp.headers.get("Access-Control-Allow-Credentials", "")
    wildcard_creds = "*" in acao and acac.strip().lower() == "true"
    if len(acao) != 1:
        return (
            False,
            (
                "no Access-Control-Allow-Origin"
                if not acao
                else "several Access-Control-Allow-Origin headers"
            ),
            wildcard_creds,
        )
    value = acao[0].strip()
    if value == "*":
        if credentials:
            return (
                False,
                "Access-Control-Allow-Origin is * but the request carries credentials",
                wildcard_creds,
            )
        return True, "", wildcard_creds
    if value != origin:
        return False, "Access-Control-Allow-Origin names a different origin", wildcard_creds
    if credentials and acac != "true":
        return False, "Access-Control-Allow-Credentials is not `true`", wildcard_creds
    return True, "", wildcard_creds


def _vary_missing(resp: ProbeResponse) -> bool:
    acao = resp.headers.get("Access-Control-Allow-Origin", "").strip()
    if not acao or acao == "*":
        return False
    vary = [v.lower() for v in resp.header_list("Vary")]
    return "origin" not in vary and "*" not in vary


def needs_preflight(method: str, headers: list[str]) -> bool:
    """Whether a browser preflights a request with this method and these header names."""
    return method not in SAFELISTED_METHODS or any(
        h.lower() not in SAFELISTED_HEADERS for h in headers
    )


def judge_preflight(
    resp: ProbeResponse, origin: str, method: str, headers: list[str], credentials: bool
) -> PreflightVerdict:
    """Judge a preflight response as the Fetch standard's CORS-preflight fetch does."""
    verdict = PreflightVerdict(allowed=True)
    verdict.vary_missing = _vary_missing(resp)
    if not 200 <= resp.status < 300:
        verdict.status_ok = False
        verdict.reason = f"preflight answered HTTP {resp.status}"
    origin_ok, why, wildcard_creds = _origin_verdict(resp, origin, credentials)
    verdict.wildcard_with_credentials = wildcard_creds
    if not origin_ok:
        verdict.origin_ok = False
        verdict.reason = verdict.reason or why
    methods = resp.header_list("Access-Control-Allow-Methods")
    if (
        method not in methods
        and method not in SAFELISTED_METHODS
        and not ("*" in methods and not credentials)
    ):
        verdict.method_ok = False
        verdict.case_mismatch = method.lower() in (m.lower() for m in methods)
        verdict.reason = verdict.reason or (
            f"Access-Control-Allow-Methods lists {method} only in another case"
            if verdict.case_mismatch
            else f"Access-Control-Allow-Methods does not list {method}"
        )
    allowed_headers = {h.lower() for h in resp.header_list("Access-Control-Allow-Headers")}
    for header in headers:
        name = header.lower()
        if name in SAFELISTED_HEADERS or name in allowed_headers:
            continue
        if "*" in allowed_headers and not credentials and name != "authorization":
            continue
        verdict.refused_headers.append(header)
    if verdict.refused_headers:
        verdict.reason = verdict.reason or (
            "Access-Control-Allow-Headers does not list " + ", ".join(verdict.refused_headers)
        )
    verdict.allowed = (
        verdict.status_ok
        and verdict.origin_ok
        and verdict.method_ok
        and not verdict.refused_headers
    )
    return verdict


def judge_actual(resp: ProbeResponse, origin: str, credentials: bool) -> tuple[bool, str]:
    """Whether the page at `origin` may read this (non-preflight) response."""
    ok, why, _ = _origin_verdict(resp, origin, credentials)
    return ok, why


def _reflects(resp: ProbeResponse, origin: str) -> bool:
    return resp.headers.get("Access-Control-Allow-Origin", "").strip() == origin


# Characters that browsers (Safari, older Chrome and Firefox) let through in an Origin's host
# and that sloppy string matching stops at: the special-character bypasses Corsy reports.
SPECIAL_CHARS = ("_", "-", "`", "%60", "!", "$", "&", "~")
# Origins anyone can publish a page on: code sandboxes and static hosting.
THIRD_PARTY_ORIGINS = (
    "https://codepen.io",
    "https://cdpn.io",
    "https://jsfiddle.net",
    "https://fiddle.jshell.net",
    "https://codesandbox.io",
    "https://vigilprobe.csb.app",
    "https://stackblitz.com",
    "https://vigilprobe.github.io",
    "https://vigilprobe.gitlab.io",
    "https://vigilprobe.netlify.app",
    "https://vigilprobe.vercel.app",
    "https://vigilprobe.pages.dev",
    "https://vigilprobe.herokuapp.com",
    "https://replit.com",
)
EVIL = "evil"  # the attacker label of the pre- and post-domain probes
ATTACKER_DOMAIN = "evil.example"  # RFC 2606 reserved: never a real site
SUBDOMAIN_LABEL = "vigilprobe"  # letters only: `\w+` and `[a-z]+` patterns match it

# kind -> (rule, what an accepting allow-list does wrong)
PROBE_KINDS: dict[str, tuple[str, str]] = {
    "pre_domain": ("origin_pre_domain", ("accepts any host that ends with the allowed host "
                   "(a suffix match)")),
    "post_domain": ("origin_post_domain", ("accepts any host that starts with the allowed host "
                    "(a prefix match or a regex without $)")),
    "unescaped_dot": ("origin_unescaped_dot", ("accepts a host whose dot is another character "
                      "(an unescaped . in a regex)")),
    "subdomain": ("origin_any_subdomain", "trusts every subdomain of the allowed domain"),
    "special_chars": ("origin_special_chars", ("stops matching at a special character "
                      "browsers allow in hosts")),
    "substring": ("origin_substring", "accepts part of an allowed origin (a substring match)"),
    "http_downgrade": ("origin_http_downgrade", ("trusts the http:// version of an https "
                       "origin, which anyone on the network can impersonate")),
    "third_party": ("origin_third_party", "trusts a site where anyone can publish a page"),
    "listed": ("origin_outside_allowlist", "accepts an origin from disallowed_origins"),
}


def _parent(host: str) -> str | None:
    """The domain whose subdomains a pattern for `host` would trust (None for IP addresses)."""
    labels = host.split(".")
    if len(labels) < 2 or host.replace(".", "").isdigit() or ":" in host:
        return None
    return ".".join(labels[1:]) if len(labels) >= 3 else host


def _netloc(host: str, port: int | None) -> str:
    return f"{host}:{port}" if port else host


def probe_origins_for(origin: str) -> dict[str, str]:
    """Look-alike origins of one allowed origin, each mapped to its kind (see PROBE_KINDS).

    Deterministic, so a finding names the same probe origin on every scrape."""
    if origin == "null":
        return {}
    parts = urlsplit(origin)
    host, port, scheme = parts.hostname or "", parts.port, parts.scheme
    out: dict[str, str] = {}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:  # an IP address has no look-alike names; only its http twin
        if scheme == "https":
            out[urlunsplit(("http", parts.netloc, "", "", ""))] = "http_downgrade"
        return out

    def add(kind: str, scheme_: str, host_: str) -> None:
        out.setdefault(urlunsplit((scheme_, _netloc(host_, port), "", "", "")), kind)

    parent = _parent(host)
    for sch in ("https", "http"):
        add("pre_domain", sch, f"{EVIL}{host}")
        if parent and parent != host:
            add("pre_domain", sch, f"{EVIL}{parent}")
        add("post_domain", sch, f"{host}.{ATTACKER_DOMAIN}")
    for i, char in enumerate(host):
        if char == ".":
            add("unescaped_dot", scheme, host[:i] + "x" + host[i + 1:])
    if parent:
        add("subdomain", scheme, f"{SUBDOMAIN_LABEL}.{parent}")
    for char in SPECIAL_CHARS:
        add("special_chars", scheme, f"{host}{char}.{ATTACKER_DOMAIN}")
    if len(host) > 1:
        add("substring", scheme, host[:-1])
    if scheme == "https":
        add("http_downgrade", "http", host)
    return out


_EXACT = (
    "compare Origin against an exact list of full origins (scheme://host:port); if you must "
    "use a regex, escape the dots and anchor both ends (^https://app\\.example\\.com$)"
)
_OUTSIDER_FIX = {
    "pre_domain": _EXACT,
    "post_domain": _EXACT,
    "unescaped_dot": "escape every dot in the origin regex (\\.) and anchor it with ^ and $",
    "subdomain": "list the subdomains that need access instead of a pattern for all of them",
    "special_chars": _EXACT,
    "substring": "compare whole origins for equality, not with `in` or a substring search",
    "http_downgrade": "allow only the https:// origin",
    "third_party": "remove the sandbox or hosting domain from the allow-list",
    "listed": _EXACT,
}


class CorsCheck(HttpCheck):
    """Preflight every origin x method (with the required headers), then send the simple
    requests, then probe origins that must be refused. Probes run concurrently."""

    name = "cors"

    def __init__(self, target: TargetConfig, cfg: CorsConfig) -> None:
        super().__init__(target, cfg)
        self.last_probe: Probe | None = None  # for tests and the benchmark

    async def __call__(self, timeout: float) -> CheckResult:
        cfg = self.cfg
        result = CheckResult(self.target, self.name, success=True)
        required = set(cfg.required_methods if cfg.required_methods is not None else cfg.methods)
        tag = "vigil-probe-" + secrets.token_hex(4)  # a fresh origin nobody allow-lists
        foreign = f"https://{tag}.invalid"
        deadline = time.monotonic() + timeout
        async with self.probe(deadline=deadline, concurrency=cfg.concurrency,
                              request_timeout=cfg.request_timeout) as probe:
            self.last_probe = probe
            matrix = {
                (o, m): self._preflight(probe, o, m) for o in cfg.origins for m in cfg.methods
            }
            simple = {
                (o, m): self._simple(probe, o, m) for o in cfg.origins for m in cfg.simple_requests
            }
            first_method = next((m for m in cfg.methods if m not in SAFELISTED_METHODS), "PUT")
            outsiders = {foreign: "reflected", "null": "null"}
            for origin in cfg.origins:
                for near, kind in probe_origins_for(origin).items():
                    if near not in cfg.origins:
                        outsiders.setdefault(near, kind)
            for near in THIRD_PARTY_ORIGINS:
                if near not in cfg.origins:
                    outsiders.setdefault(near, "third_party")
            for origin in cfg.disallowed_origins:
                outsiders[origin] = "listed"
            # The look-alikes are asked with a plain GET, as CORS scanners ask: a trusted
            # origin is echoed on the response a page would read. The random origin, null and
            # disallowed_origins are asked with a preflight too, since some layers answer
            # only one of the two with CORS headers.
            asked_twice = [o for o, kind in outsiders.items()
                           if kind in ("reflected", "null", "listed")]
            outside = {o: self._preflight(probe, o, first_method) for o in asked_twice}
            outside_get = {o: self._simple(probe, o, "GET") for o in outsiders}
            tasks = [*matrix.values(), *simple.values(), *outside.values(), *outside_get.values()]
            done = await asyncio.gather(*tasks, return_exceptions=True)
        answers = dict(
            zip(
                [("pf", k) for k in matrix]
                + [("sr", k) for k in simple]
                + [("out", k) for k in outside]
                + [("outget", k) for k in outside_get],
                done,
                strict=True,
            )
        )
        errors = [a for a in done if isinstance(a, BaseException)]
        if errors and len(errors) == len(done):
            raise ProbeError(f"every CORS probe failed; first: {errors[0]}")
        self._judge_matrix(result, answers, required)
        self._judge_outsiders(result, answers, outsiders, foreign)
        for exc in errors[:5]:
            result.findings.append(
                Finding(
                    "probe_failed",
                    Severity.WARNING,
                    self.target,
                    f"a CORS probe failed: {exc}",
                    "check that the target is reachable and answers OPTIONS within the timeout",
                )
            )
        return result

    def _preflight(self, probe: Probe, origin: str, method: str) -> asyncio.Task[ProbeResponse]:
        headers = {"Origin": origin, "Access-Control-Request-Method": method}
        names = sorted({h.lower() for h in self.cfg.request_headers} - SAFELISTED_HEADERS)
        if names:
            headers["Access-Control-Request-Headers"] = ",".join(names)
        return asyncio.ensure_future(
            probe.request("OPTIONS", self.cfg.path, headers=headers, read_body=False)
        )

    def _simple(self, probe: Probe, origin: str, method: str) -> asyncio.Task[ProbeResponse]:
        return asyncio.ensure_future(
            probe.request(method, self.cfg.path, headers={"Origin": origin}, read_body=False)
        )

    def _judge_matrix(self, result: CheckResult, answers: dict, required: set[str]) -> None:
        cfg = self.cfg
        creds = cfg.credentials
        required_headers = {
            h.lower()
            for h in (
                cfg.required_headers if cfg.required_headers is not None else cfg.request_headers
            )
        }
        fix_methods = (
            "add the method to Access-Control-Allow-Methods (upper case, exactly as "
            "the browser sends it)"
        )
        for origin in cfg.origins:
            verdicts: dict[str, tuple[ProbeResponse, PreflightVerdict]] = {}
            for method in cfg.methods:
                resp = answers[("pf", (origin, method))]
                if isinstance(resp, BaseException):
                    continue
                verdict = judge_preflight(resp, origin, method, cfg.request_headers, creds)
                verdicts[method] = (resp, verdict)
                result.add_sample(
                    "vigil_cors_preflight_allowed",
                    {"target": self.target, "origin": origin, "method": method},
                    1.0 if verdict.allowed else 0.0,
                )
            vary_missing = any(v.vary_missing for _, v in verdicts.values())
            wildcard_creds = any(v.wildcard_with_credentials for _, v in verdicts.values())
            # An origin refused on every method is one finding, not one per method.
            refused_origin = (
                next((v.reason for _, v in verdicts.values()), "")
                if verdicts and not any(v.origin_ok for _, v in verdicts.values())
                else ""
            )
            bad_status: list[str] = []
            for method, (resp, verdict) in verdicts.items():
                if verdict.allowed or refused_origin or method not in required:
                    continue
                subject = f"{origin} {method}"
                if verdict.case_mismatch:
                    result.findings.append(
                        Finding(
                            "methods_case_mismatch",
                            Severity.CRITICAL,
                            subject,
                            f"preflight lists {method} only in another case; browsers compare methods "
                            "case-sensitively, so the request is blocked",
                            fix_methods,
                        )
                    )
                elif not verdict.method_ok:
                    result.findings.append(
                        Finding(
                            "method_refused",
                            Severity.CRITICAL,
                            subject,
                            f"the application needs {method} but the preflight refuses it "
                            f"({verdict.reason})",
                            fix_methods,
                        )
                    )
                elif verdict.refused_headers:
                    for header in verdict.refused_headers:
                        if header.lower() not in required_headers:
                            continue
                        result.findings.append(
                            Finding(
                                "header_refused",
                                Severity.CRITICAL,
                                f"{origin} {method} {header}",
                                f"the application sends {header} but the preflight does not allow it",
                                "add the header to Access-Control-Allow-Headers",
                            )
                        )
                elif not verdict.status_ok:
                    bad_status.append(f"{method}:{resp.status}")
                else:
                    result.findings.append(
                        Finding(
                            "method_refused",
                            Severity.CRITICAL,
                            subject,
                            f"the preflight for {method} is refused: {verdict.reason}",
                            fix_methods,
                        )
                    )
            if bad_status:
                result.findings.append(
                    Finding(
                        "preflight_not_2xx",
                        Severity.CRITICAL,
                        origin,
                        "preflight answered non-2xx: " + ", ".join(bad_status),
                        "answer OPTIONS preflights with 200 or 204 before any auth or routing that "
                        "rejects them",
                    )
                )
            if refused_origin:
                result.findings.append(
                    Finding(
                        "origin_refused",
                        Severity.CRITICAL,
                        origin,
                        f"an allowed front-end origin is refused: {refused_origin}",
                        "add the exact origin (scheme, host, port) to the allow-list",
                    )
                )
            if wildcard_creds:
                result.findings.append(
                    Finding(
                        "wildcard_with_credentials",
                        Severity.CRITICAL,
                        origin,
                        "Access-Control-Allow-Origin: * is sent together with "
                        "Access-Control-Allow-Credentials: true",
                        "echo the one matching allowed origin (with Vary: Origin) instead of *",
                    )
                )
            for method in cfg.simple_requests:
                resp = answers[("sr", (origin, method))]
                if isinstance(resp, BaseException):
                    continue
                vary_missing |= _vary_missing(resp)
                ok, why = judge_actual(resp, origin, creds)
                if not ok and not refused_origin:
                    result.findings.append(
                        Finding(
                            "response_unreadable",
                            Severity.CRITICAL,
                            f"{origin} {method}",
                            f"the actual {method} response cannot be read by the page: {why}",
                            "send the CORS headers on actual responses too, not only on preflights",
                        )
                    )
            if vary_missing:
                result.findings.append(
                    Finding(
                        "vary_origin_missing",
                        Severity.WARNING,
                        origin,
                        "the allowed origin is echoed dynamically but Vary: Origin is missing, so "
                        "caches can serve one origin's answer to another",
                        "add Vary: Origin to every response whose Access-Control-Allow-Origin "
                        "depends on the request",
                    )
                )

    def _judge_outsiders(
        self, result: CheckResult, answers: dict, outsiders: dict[str, str], foreign: str
    ) -> None:
        creds = self.cfg.credentials

        def accepted(origin: str) -> tuple[bool, bool]:
            """(origin echoed back, credentials allowed too) from preflight or GET."""
            hits = [answers.get(("out", origin)), answers.get(("outget", origin))]
            echoed = any(isinstance(r, ProbeResponse) and _reflects(r, origin) for r in hits)
            with_creds = any(
                isinstance(r, ProbeResponse)
                and _reflects(r, origin)
                and r.headers.get("Access-Control-Allow-Credentials") == "true"
                for r in hits
            )
            return echoed, with_creds

        def sev(with_creds: bool) -> Severity:
            return Severity.CRITICAL if with_creds else Severity.WARNING

        reflected, reflected_creds = accepted(foreign)
        if reflected:
            result.findings.append(
                Finding(
                    "origin_reflected",
                    sev(reflected_creds),
                    "*",
                    "an arbitrary origin is echoed back as allowed"
                    + (
                        " with credentials: any site can read users' data"
                        if reflected_creds
                        else ""
                    ),
                    "compare the Origin header against an exact allow-list; never echo it unchecked",
                )
            )
        null_ok, null_creds = accepted("null")
        if null_ok:
            result.findings.append(
                Finding(
                    "null_origin_trusted",
                    sev(null_creds),
                    "null",
                    "Origin: null is allowed; sandboxed iframes and file: pages of any site send it",
                    "remove `null` from the allow-list",
                )
            )
        # When any subdomain is trusted, a pre-domain probe inside that domain
        # (evilapp.example.com) says nothing more: report the subdomain finding alone.
        trusted_parents = [
            _parent(urlsplit(o).hostname or "") or ""
            for o, kind in outsiders.items()
            if kind == "subdomain" and accepted(o)[0]
        ]
        for origin, kind in outsiders.items():
            if kind in ("reflected", "null"):
                continue
            ok, with_creds = accepted(origin)
            if not ok or reflected:
                continue  # an echo of every origin is reported once, as origin_reflected
            host = urlsplit(origin).hostname or ""
            if kind == "pre_domain" and any(p and host.endswith("." + p) for p in trusted_parents):
                continue
            rule, wrong = PROBE_KINDS[kind]
            severity = sev(with_creds)
            if kind == "subdomain":
                # Trusting your own subdomains is often intended; it only matters as much as
                # the weakest subdomain (a takeover or an XSS there reads this API).
                severity = Severity.WARNING if with_creds else Severity.INFO
            result.findings.append(
                Finding(
                    rule,
                    severity,
                    origin,
                    f"the probe origin {origin} is accepted"
                    + (" with credentials" if with_creds else "")
                    + f": the allow-list {wrong}",
                    _OUTSIDER_FIX[kind],
                )
            )
        wildcard = [
            r
            for k, r in answers.items()
            if k[0] in ("out", "outget")
            and isinstance(r, ProbeResponse)
            and r.headers.get("Access-Control-Allow-Origin", "").strip() == "*"
        ]
        if wildcard and not creds:
            result.findings.append(
                Finding(
                    "wildcard_origin",
                    Severity.INFO,
                    "*",
                    "any origin may read responses (Access-Control-Allow-Origin: *)",
                    "fine for a public API; otherwise use an exact allow-list",
                )
            )
