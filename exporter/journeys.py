"""Synthetic journeys: a sequence of requests from a browser-like origin, each preceded by
the CORS preflight a browser would send, with captures, expectations and latency budgets."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import quote

from vigil.exporter.base import CheckResult, Finding, Severity
from vigil.exporter.config import JourneyConfig, JourneysConfig, JourneyStep
from vigil.exporter.cors import judge_actual, judge_preflight, needs_preflight
from vigil.exporter.jsonpath import MISSING, resolve
from vigil.exporter.probe import HttpCheck, Probe, ProbeError, env_headers

__all__ = ["JourneysCheck", "substitute"]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(template: Any, values: dict[str, Any], *, in_path: bool = False) -> Any:
    """Fill {name} placeholders from captured values, recursively through JSON bodies."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and not in_path:
            if whole.group(1) not in values:
                raise KeyError(whole.group(1))
            return values[whole.group(1)]  # keep the captured type (int ids stay ints)

        def repl(match: re.Match[str]) -> str:
            value = values[match.group(1)]
            return quote(str(value), safe="") if in_path else str(value)

        return _PLACEHOLDER.sub(repl, template)
    if isinstance(template, dict):
        return {k: substitute(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [substitute(v, values) for v in template]
    return template


class _StepFailed(Exception):
    def __init__(self, rule: str, message: str, fix: str, severity: Severity = Severity.CRITICAL):
        super().__init__(message)
        self.rule, self.message, self.fix, self.severity = rule, message, fix, severity


class JourneysCheck(HttpCheck):
    """Run every journey; a journey stops at its first broken step (cleanup steps still run)."""

    name = "journeys"
    cfg: JourneysConfig

    async def __call__(self, timeout: float) -> CheckResult:
        result = CheckResult(self.target, self.name, success=True)
        deadline = time.monotonic() + timeout
        auth = env_headers(*self.auth)
        async with self.probe(deadline=deadline, concurrency=8,
                              request_timeout=self.cfg.request_timeout) as probe:
            await asyncio.gather(*(self._journey(probe, j, result, auth) for j in self.cfg.items))
        return result

    async def _journey(
        self, probe: Probe, journey: JourneyConfig, result: CheckResult, auth: dict[str, str]
    ) -> None:
        captured: dict[str, Any] = {}
        broken: str | None = None
        start = time.perf_counter()
        for step in journey.steps:
            if broken is not None and not step.always:
                continue
            labels = {"target": self.target, "journey": journey.name, "step": step.name}
            try:
                await self._step(probe, journey, step, captured, result, auth)
            except _StepFailed as fail:
                result.add_sample("vigil_journey_step_ok", labels, 0.0)
                if broken is None:
                    broken = step.name
                    result.findings.append(
                        Finding(
                            fail.rule,
                            fail.severity,
                            f"{journey.name}/{step.name}",
                            f"journey {journey.name} broke at step {step.name} "
                            f"({step.method} {step.path}): {fail.message}",
                            fail.fix,
                            step.path,
                        )
                    )
            else:
                result.add_sample("vigil_journey_step_ok", labels, 1.0)
        jl = {"target": self.target, "journey": journey.name}
        result.add_sample("vigil_journey_success", jl, 0.0 if broken else 1.0)
        result.add_sample("vigil_journey_duration_seconds", jl, time.perf_counter() - start)

    async def _step(
        self,
        probe: Probe,
        journey: JourneyConfig,
        step: JourneyStep,
        captured: dict[str, Any],
        result: CheckResult,
        auth: dict[str, str],
    ) -> None:
        try:
            path = substitute(step.path, captured, in_path=True)
            body = substitute(step.json_body, captured) if step.json_body is not None else None
        except KeyError as exc:
            raise _StepFailed(
                "journey_capture_missing",
                f"placeholder {{{exc.args[0]}}} was never captured",
                "fix the capture of an earlier step",
            ) from None
        headers = {**step.headers, **auth}
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        names = sorted(headers)
        try:
            if needs_preflight(step.method, names):
                pf_headers = {
                    "Origin": journey.origin,
                    "Access-Control-Request-Method": step.method,
                }
                non_safe = sorted(
                    {n.lower() for n in names} - {"accept", "accept-language", "content-language"}
                )
                if non_safe:
                    pf_headers["Access-Control-Request-Headers"] = ",".join(non_safe)
                pf = await probe.request("OPTIONS", path, headers=pf_headers, read_body=False)
                verdict = judge_preflight(
                    pf, journey.origin, step.method, names, journey.credentials
                )
                if not verdict.allowed:
                    raise _StepFailed(
                        "journey_cors_blocked",
                        f"the browser's CORS preflight is refused: {verdict.reason}",
                        f"allow {step.method} (and the headers {', '.join(names) or 'none'}) for "
                        f"{journey.origin} in the CORS configuration",
                    )
            resp = await probe.request(
                step.method, path, headers={"Origin": journey.origin, **headers}, json=body
            )
        except ProbeError as exc:
            raise _StepFailed("journey_request_failed", str(exc), "check the service") from None
        readable, why = judge_actual(resp, journey.origin, journey.credentials)
        if not readable:
            raise _StepFailed(
                "journey_cors_blocked",
                f"the page cannot read the response: {why}",
                "send CORS headers on actual responses for this origin",
            )
        if resp.status not in step.expect_status:
            raise _StepFailed(
                "journey_unexpected_status",
                f"answered HTTP {resp.status}, expected "
                + "/".join(str(s) for s in step.expect_status),
                "look at the service's logs for this route",
            )
        document: Any = MISSING
        if step.expect_json or step.capture:
            try:
                document = json.loads(resp.body)
            except ValueError:
                raise _StepFailed(
                    "journey_unexpected_body",
                    "the response is not JSON",
                    "check the route's response",
                ) from None
        for jpath, expected in step.expect_json.items():
            if resolve(document, jpath) != expected:
                raise _StepFailed(
                    "journey_unexpected_body",
                    f"{jpath} is not the expected value",
                    "check the route's response",
                )
        for name, jpath in step.capture.items():
            value = resolve(document, jpath)
            if value is MISSING:
                raise _StepFailed(
                    "journey_capture_missing",
                    f"{jpath} is missing in the response",
                    "check the route's response",
                )
            captured[name] = value
        if resp.elapsed > step.latency_budget:
            result.findings.append(
                Finding(
                    "journey_latency_over_budget",
                    Severity.WARNING,
                    f"{journey.name}/{step.name}",
                    f"step took {resp.elapsed:.3f}s, budget {step.latency_budget:g}s",
                    "profile the route or raise the budget",
                    step.path,
                )
            )
