"""A score on the Mozilla HTTP Observatory's published scale, from one response.

The modifiers and grades are those of the Observatory's scoring table and grader
(mdn/mdn-http-observatory, src/grader/charts.js SCORE_TABLE and GRADE_CHART, and the curve
in src/scanner/index.js): start at 100, add every test's modifier; bonuses count only when
the score without them is already 90 or more; the grade is looked up at the score rounded
down to a multiple of 5 (A+ from 100).

Not evaluated here, and so scored 0: Subresource Integrity (it needs the HTML's script tags)
and HSTS preloading (it needs the preload list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie

from multidict import CIMultiDict, CIMultiDictProxy
from vigil.exporter.csp import CspAnalysis

__all__ = [
    "GRADES",
    "HSTS_SIX_MONTHS",
    "MINIMUM_SCORE_FOR_EXTRA_CREDIT",
    "ObservatoryScore",
    "grade_for",
    "referrer_policy",
    "score_response",
]

HSTS_SIX_MONTHS = 15768000  # the Observatory's "six months"
MINIMUM_SCORE_FOR_EXTRA_CREDIT = 90
GRADES = (
    (100, "A+"), (90, "A"), (85, "A-"), (80, "B+"), (70, "B"), (65, "B-"), (60, "C+"),
    (50, "C"), (45, "C-"), (40, "D+"), (30, "D"), (25, "D-"), (0, "F"),
)
REFERRER_POLICIES = frozenset(
    {
        "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin",
        "origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade",
    }
)
REFERRER_PRIVATE = frozenset(
    {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
)

Headers = CIMultiDictProxy[str] | CIMultiDict[str]


def grade_for(score: int) -> str:
    score = max(score, 0)
    bucket = min(score - score % 5, 100)
    return next(g for floor, g in GRADES if bucket >= floor)


def referrer_policy(headers: Headers) -> str | None:
    """The policy a browser applies: the last recognised token of the header (None: unset,
    "" when set but nothing is recognised)."""
    values = headers.getall("Referrer-Policy", [])
    if not values:
        return None
    tokens = [t.strip().lower() for v in values for t in v.split(",")]
    known = [t for t in tokens if t in REFERRER_POLICIES]
    return known[-1] if known else ""


@dataclass
class ObservatoryScore:
    score: int
    grade: str
    # test name -> (Observatory expectation, modifier)
    tests: dict[str, tuple[str, int]] = field(default_factory=dict)


def _csp(csp: CspAnalysis) -> tuple[str, int]:
    if not csp.present:
        return "csp-not-implemented", -25
    if csp.unsafe_inline or csp.broad_script or csp.broad_object:
        return "csp-implemented-with-unsafe-inline", -20
    if csp.insecure_active:
        return "csp-implemented-with-insecure-scheme", -20
    if csp.unsafe_eval:
        return "csp-implemented-with-unsafe-eval", -10
    if csp.insecure_passive:
        return "csp-implemented-with-insecure-scheme-in-passive-content-only", -10
    if csp.unsafe_style:
        return "csp-implemented-with-unsafe-inline-in-style-src-only", 0
    if csp.default_none:
        return "csp-implemented-with-no-unsafe-default-src-none", 10
    return "csp-implemented-with-no-unsafe", 5


def hsts_max_age(headers: Headers) -> int | None:
    """max-age of the first Strict-Transport-Security header (None: absent or invalid)."""
    value = headers.get("Strict-Transport-Security")
    if value is None:
        return None
    match = re.search(r"(?:^|;)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:;|$)", value, re.IGNORECASE)
    return int(match.group(1)) if match else None


def _hsts(headers: Headers, https: bool, cert_ok: bool) -> tuple[str, int, bool]:
    """(expectation, modifier, passes)."""
    if not https:
        return "hsts-not-implemented-no-https", -20, False
    if not cert_ok:
        return "hsts-invalid-cert", -20, False
    if "Strict-Transport-Security" not in headers:
        return "hsts-not-implemented", -20, False
    age = hsts_max_age(headers)
    if age is None:
        return "hsts-header-invalid", -20, False
    if age < HSTS_SIX_MONTHS:
        return "hsts-implemented-max-age-less-than-six-months", -10, False
    return "hsts-implemented-max-age-at-least-six-months", 0, True


def _cookies(headers: Headers, hsts_ok: bool) -> tuple[str, int]:
    worst: tuple[str, int] | None = None

    def worse(name: str, mod: int) -> None:
        nonlocal worst
        if worst is None or mod < worst[1]:
            worst = (name, mod)

    missing_samesite = False
    count = 0
    for raw in headers.getall("Set-Cookie", []):
        for part in raw.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "samesite" and value.strip().lower() not in (
                "lax", "strict", "none"
            ):
                worse("cookies-samesite-flag-invalid", -20)
        try:
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
        except Exception:  # noqa: BLE001, S112 - an unparsable cookie is left out, as a jar would
            continue
        for name, morsel in jar.items():
            count += 1
            lower = name.lower()
            session = "login" in lower or "sess" in lower
            secure, httponly = bool(morsel["secure"]), bool(morsel["httponly"])
            samesite = str(morsel["samesite"]).strip().lower()
            if not secure and samesite == "none":
                worse("cookies-samesite-flag-invalid", -20)
            if not secure:
                worse(*(("cookies-without-secure-flag-but-protected-by-hsts", -5) if hsts_ok
                        else ("cookies-without-secure-flag", -20)))
            if "csrf" in lower and not samesite:
                worse("cookies-anticsrf-without-samesite-flag", -20)
            if session and not secure:
                worse(*(("cookies-session-without-secure-flag-but-protected-by-hsts", -10)
                        if hsts_ok else ("cookies-session-without-secure-flag", -40)))
            if session and not httponly:
                worse("cookies-session-without-httponly-flag", -30)
            missing_samesite |= not samesite
    if worst is not None:
        return worst
    if not count:
        return "cookies-not-found", 0
    if missing_samesite:
        return "cookies-secure-with-httponly-sessions", 0
    return "cookies-secure-with-httponly-sessions-and-samesite", 5


def _cors(cors_headers: Headers | None, origin: str) -> tuple[str, int]:
    if cors_headers is None:
        return "cross-origin-resource-sharing-not-implemented", 0
    acao = cors_headers.get("Access-Control-Allow-Origin", "").strip()
    creds = cors_headers.get("Access-Control-Allow-Credentials", "").strip().lower() == "true"
    if not acao:
        return "cross-origin-resource-sharing-not-implemented", 0
    if acao == "*":
        return "cross-origin-resource-sharing-implemented-with-public-access", 0
    if acao == origin and creds:
        return "cross-origin-resource-sharing-implemented-with-universal-access", -50
    return "cross-origin-resource-sharing-implemented-with-restricted-access", 0


def _referrer(headers: Headers) -> tuple[str, int]:
    policy = referrer_policy(headers)
    if policy is None:
        return "referrer-policy-not-implemented", 0
    if policy == "":
        return "referrer-policy-header-invalid", -5
    if policy in REFERRER_PRIVATE:
        return "referrer-policy-private", 5
    return "referrer-policy-unsafe", -5


def _xcto(headers: Headers) -> tuple[str, int]:
    value = headers.get("X-Content-Type-Options")
    if value is None:
        return "x-content-type-options-not-implemented", -5
    if value.strip().lower() == "nosniff":
        return "x-content-type-options-nosniff", 0
    return "x-content-type-options-header-invalid", -5


def _xfo(headers: Headers, csp: CspAnalysis) -> tuple[str, int]:
    # As the Observatory scores it: any frame-ancestors directive counts (even `*`), which
    # the security check itself does not accept as protection.
    if csp.frame_ancestors is not None:
        return "x-frame-options-implemented-via-csp", 5
    value = headers.get("X-Frame-Options")
    if value is None:
        return "x-frame-options-not-implemented", -20
    xfo = value.strip().lower()
    if xfo in ("deny", "sameorigin"):
        return "x-frame-options-sameorigin-or-deny", 0
    if xfo.startswith("allow-from"):
        return "x-frame-options-allow-from-origin", 0
    return "x-frame-options-header-invalid", -20


def _corp(headers: Headers) -> tuple[str, int]:
    value = headers.get("Cross-Origin-Resource-Policy")
    if value is None:
        return "cross-origin-resource-policy-not-implemented", 0
    corp = value.strip().lower()
    if corp in ("same-origin", "same-site"):
        return f"cross-origin-resource-policy-implemented-with-{corp}", 10
    if corp == "cross-origin":
        return "cross-origin-resource-policy-implemented-with-cross-origin", 0
    return "cross-origin-resource-policy-header-invalid", -5


def score_response(
    headers: Headers,
    *,
    https: bool,
    csp: CspAnalysis,
    cert_ok: bool = True,
    redirection: tuple[str, int] = ("redirection-not-needed-no-http", 0),
    cors_headers: Headers | None = None,
    cors_origin: str = "",
) -> ObservatoryScore:
    """The Observatory's score of one response (and the HTTP redirect and CORS answers)."""
    hsts_name, hsts_mod, hsts_ok = _hsts(headers, https, cert_ok)
    tests = {
        "content-security-policy": _csp(csp),
        "cookies": _cookies(headers, hsts_ok),
        "cross-origin-resource-sharing": _cors(cors_headers, cors_origin),
        "redirection": redirection,
        "referrer-policy": _referrer(headers),
        "strict-transport-security": (hsts_name, hsts_mod),
        "subresource-integrity": ("sri-not-evaluated", 0),
        "x-content-type-options": _xcto(headers),
        "x-frame-options": _xfo(headers, csp),
        "cross-origin-resource-policy": _corp(headers),
    }
    with_bonus = 100 + sum(mod for _, mod in tests.values())
    uncurved = 100 + sum(mod for _, mod in tests.values() if mod < 0)
    score = max(with_bonus if uncurved >= MINIMUM_SCORE_FOR_EXTRA_CREDIT else uncurved, 0)
    return ObservatoryScore(score, grade_for(score), tests)
