"""Content-Security-Policy parsing and the judgments browsers and the HTTP Observatory make.

A response can carry several policies (several headers, or one header with comma-separated
policies); a browser enforces every one, so a source is allowed only when every policy that
governs it allows it. A policy governs a fetch directive through the directive itself or,
when absent, `default-src`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BROAD_SOURCES", "CspAnalysis", "analyse_csp", "parse_policies"]

# Sources that allow (nearly) any host: the Observatory's "dangerously broad" list.
BROAD_SOURCES = frozenset(
    {"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"}
)
_INLINE = frozenset({"'unsafe-inline'", "data:"})
_NONCE_HASH = ("'nonce-", "'sha256-", "'sha384-", "'sha512-")

Policy = dict[str, list[str]]


def parse_policies(values: list[str]) -> list[Policy]:
    """Each policy as directive -> source list (lower-cased names; the first occurrence of a
    directive wins, as the CSP spec says). Empty policies are dropped."""
    out: list[Policy] = []
    for value in values:
        for text in value.split(","):
            policy: Policy = {}
            for part in text.split(";"):
                tokens = part.split()
                if tokens:
                    policy.setdefault(tokens[0].lower(), [t.lower() for t in tokens[1:]])
            if policy:
                out.append(policy)
    return out


def _governing(policies: list[Policy], directive: str) -> list[list[str]]:
    """The source lists that govern `directive`, one per policy that restricts it."""
    return [
        p[directive] if directive in p else p["default-src"]
        for p in policies
        if directive in p or "default-src" in p
    ]


def _effective_script(sources: list[str]) -> set[str]:
    """Script sources after the keywords that switch others off: a nonce or hash disables
    'unsafe-inline', and 'strict-dynamic' (with one) disables host and scheme sources."""
    out = set(sources)
    if any(s.startswith(_NONCE_HASH) for s in out):
        out.discard("'unsafe-inline'")
        if "'strict-dynamic'" in out:
            out = {s for s in out if s.startswith("'") and s != "'self'"}
    return out


@dataclass
class CspAnalysis:
    """What one response's policies allow."""

    present: bool = False
    report_only: bool = False  # only Content-Security-Policy-Report-Only (enforces nothing)
    script_restricted: bool = False  # script-src or default-src is set in some policy
    object_restricted: bool = False  # object-src or default-src is set in some policy
    unsafe_inline: bool = False  # inline scripts (or data: scripts) run
    unsafe_eval: bool = False  # eval() runs (script-src or style-src, as the Observatory reads)
    broad_script: list[str] = field(default_factory=list)  # broad sources that apply
    broad_object: list[str] = field(default_factory=list)
    insecure_active: list[str] = field(default_factory=list)  # http:/ftp: sources, not img/media
    insecure_passive: list[str] = field(default_factory=list)  # http:/ftp: in img/media
    unsafe_style: bool = False  # 'unsafe-inline', data: or broad sources in style-src
    default_none: bool = False  # default-src 'none' and nothing else
    frame_ancestors: list[str] | None = None  # None: not set
    framing_protected: bool = False  # frame-ancestors set and not a broad source


def _all_allow(lists: list[set[str]], pred: set[str] | frozenset[str]) -> list[str]:
    """Sources of `pred` that every governing list allows (none when nothing governs)."""
    if not lists:
        return []
    common = set.intersection(*[{s for s in lst if s in pred} for lst in lists])
    return sorted(common)


def analyse_csp(csp_values: list[str], report_only_values: list[str], https: bool) -> CspAnalysis:
    """Judge the Content-Security-Policy header values of one response."""
    policies = parse_policies(csp_values)
    out = CspAnalysis(present=bool(policies), report_only=not policies and bool(
        parse_policies(report_only_values)))
    if not policies:
        return out
    scripts = [_effective_script(s) for s in _governing(policies, "script-src")]
    objects = [set(s) for s in _governing(policies, "object-src")]
    styles = [set(s) for s in _governing(policies, "style-src")]
    out.script_restricted = bool(scripts)
    out.object_restricted = bool(objects)
    # Unrestricted script-src or object-src allows everything, inline included.
    out.unsafe_inline = not scripts or bool(_all_allow(scripts, _INLINE))
    out.unsafe_eval = (not scripts or bool(_all_allow(scripts, {"'unsafe-eval'"}))) or (
        bool(styles) and bool(_all_allow(styles, {"'unsafe-eval'"}))
    )
    out.broad_script = ["*"] if not scripts else _all_allow(scripts, BROAD_SOURCES)
    out.broad_object = ["*"] if not objects else _all_allow(objects, BROAD_SOURCES)
    out.unsafe_style = not styles or bool(_all_allow(styles, BROAD_SOURCES | _INLINE))
    if https:
        for policy in policies:
            for directive, sources in policy.items():
                bad = [s for s in sources if s.startswith(("http:", "ftp:"))]
                target = (
                    out.insecure_passive
                    if directive in ("img-src", "media-src")
                    else out.insecure_active
                )
                target += [s for s in bad if s not in target]
    out.default_none = all(p.get("default-src") == ["'none'"] for p in policies if
                           "default-src" in p) and any("default-src" in p for p in policies)
    ancestors = [p["frame-ancestors"] for p in policies if "frame-ancestors" in p]
    if ancestors:
        out.frame_ancestors = ancestors[0]
        # Protected when some policy restricts framing to named origins (or none at all).
        out.framing_protected = any(not (set(a) & BROAD_SOURCES) for a in ancestors)
    return out
