"""The endpoint check: status, latency against a budget, and an optional body or JSON
expectation, for every configured endpoint, concurrently."""

from __future__ import annotations

import asyncio
import json
import time

from vigil.exporter.base import CheckResult, Finding, Severity
from vigil.exporter.config import EndpointConfig, EndpointsConfig
from vigil.exporter.jsonpath import MISSING, resolve
from vigil.exporter.probe import HttpCheck, ProbeError, ProbeResponse, env_headers

__all__ = ["EndpointsCheck", "judge_body"]


def judge_body(resp: ProbeResponse, ep: EndpointConfig) -> str | None:
    """Why the body misses its expectation (fixed text, never the body), or None."""
    if ep.body_contains is not None and ep.body_contains.encode() not in resp.body:
        return "the body does not contain the expected text"
    if ep.json_path is not None:
        try:
            document = json.loads(resp.body)
        except ValueError:
            return "the body is not JSON"
        value = resolve(document, ep.json_path)
        if value is MISSING:
            return f"{ep.json_path} is missing" if ep.json_exists else None
        if not ep.json_exists:
            return f"{ep.json_path} is present but should not be"
        if ep.json_equals is not None and value != ep.json_equals:
            return f"{ep.json_path} does not equal the expected value"
    return None


class EndpointsCheck(HttpCheck):
    """Request every endpoint once; report down, wrong status, slow, or wrong body."""

    name = "endpoints"
    cfg: EndpointsConfig

    async def __call__(self, timeout: float) -> CheckResult:
        result = CheckResult(self.target, self.name, success=True)
        deadline = time.monotonic() + timeout
        auth = env_headers(*self.auth)
        async with self.probe(deadline=deadline, concurrency=self.cfg.concurrency,
                              request_timeout=30.0) as probe:
            answers = await asyncio.gather(
                *(
                    probe.request(
                        ep.method, ep.path, headers={**ep.headers, **auth}, timeout=ep.timeout
                    )
                    for ep in self.cfg.items
                ),
                return_exceptions=True,
            )
        for ep, resp in zip(self.cfg.items, answers, strict=True):
            labels = {"target": self.target, "endpoint": ep.name}
            sev = Severity(ep.severity)
            subject = f"{ep.name} {ep.method} {ep.path}"
            if isinstance(resp, BaseException):
                if not isinstance(resp, ProbeError):
                    raise resp
                result.add_sample("vigil_endpoint_up", labels, 0.0)
                result.findings.append(
                    Finding(
                        "endpoint_down",
                        sev,
                        subject,
                        str(resp),
                        "check the service and the path",
                        ep.path,
                    )
                )
                continue
            result.add_sample("vigil_endpoint_latency_seconds", labels, resp.elapsed)
            ok = resp.status in ep.expect_status
            if not ok:
                result.findings.append(
                    Finding(
                        "unexpected_status",
                        sev,
                        subject,
                        f"answered HTTP {resp.status}, expected "
                        + "/".join(str(s) for s in ep.expect_status),
                        "look at the service's logs for this route",
                        ep.path,
                    )
                )
            else:
                why = judge_body(resp, ep)
                if why:
                    ok = False
                    result.findings.append(
                        Finding(
                            "body_mismatch",
                            sev,
                            subject,
                            why,
                            "check the response content",
                            ep.path,
                        )
                    )
            result.add_sample("vigil_endpoint_up", labels, 1.0 if ok else 0.0)
            if resp.elapsed > ep.latency_budget:
                result.findings.append(
                    Finding(
                        "latency_over_budget",
                        Severity.WARNING,
                        subject,
                        f"took {resp.elapsed:.3f}s, budget {ep.latency_budget:g}s",
                        "profile the route or raise the budget if it was unrealistic",
                        ep.path,
                    )
                )
        return result
