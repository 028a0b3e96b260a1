"""The console in a real browser (Playwright driving Debian's chromium) on the real loop:
Prometheus rule -> Alertmanager notification -> remediator -> console. Screenshots for
docs/console.md are taken on the way (written to $VIGIL_CONSOLE_SCREENSHOTS when set)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from vigil.remediator.keys import STORE

from tests.remediator.conftest import ADMIN_TOKEN, WEBHOOK_TOKEN, procedure
from tests.remediator.test_actions import INSTANCE_PARAM, demo_config
from tests.remediator.test_verify import memory_rule
from vigil.procs import prometheus_config

pytestmark = pytest.mark.integration

WAIT_MS = 90_000  # the live page must show it without a reload within this long


async def sign_in(page: Any, base: str, token: str = ADMIN_TOKEN) -> None:
    await page.goto(f"{base}/console/login")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")


async def test_live_incident_approve_verify_and_pause_holds_the_next_alert(
        make_config: Any, start_console: Any, demo_target: Any, prometheus_factory: Any,
        alertmanager_factory: Any, browser_page: Any, shot: Any, tmp_path: Path) -> None:
    page = browser_page
    proc = procedure("restart-leaking-target",
                     match=['alertname="TargetMemoryExhaustionPredicted"', 'remediation="auto"'],
                     params=INSTANCE_PARAM, target="${instance}", requires_approval=True,
                     steps=[{"action": "http", "url": "http://${instance}/admin/restart",
                             "credentials": "demo-admin"}],
                     verify={"query": 'demo_memory_leak_bytes{instance="${instance}"} == 0',
                             "timeout": "60s", "interval": "500ms", "consecutive": 2})
    rules = memory_rule(tmp_path / "rules.yml")
    token_file = tmp_path / "am-token"
    token_file.write_text(WEBHOOK_TOKEN)
    config = demo_config(make_config, demo_target, [proc])
    client = await start_console(config)
    base = str(client.make_url("")).rstrip("/")
    _, am = alertmanager_factory({
        "route": {"receiver": "vigil-remediator", "group_by": ["..."], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "vigil-remediator", "webhook_configs": [{
            "url": f"{base}/api/v1/alerts", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer",
                                              "credentials_file": str(token_file)}}}]}]})
    _, prom = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]},
                                                   rule_files=[rules],
                                                   alertmanagers=[am.removeprefix("http://")]))
    config.prometheus_url = prom

    await page.goto(f"{base}/console/login")
    await page.fill("input[name=token]", ADMIN_TOKEN)
    await shot(page, "console-login")
    await page.click("button[type=submit]")
    assert page.url == f"{base}/console"
    await page.wait_for_selector("text=No incidents yet.")

    # a real Alertmanager notification; the open page shows the incident without a reload
    demo_target.inject(memory_growth_bytes_per_second=3_000_000)
    row = page.locator("tr.incident").first
    await row.locator("td.state", has_text="awaiting_approval").wait_for(timeout=WAIT_MS)
    assert await row.locator("td", has_text="TargetMemoryExhaustionPredicted").count() == 1
    await shot(page, "console-incidents")

    await row.locator("a").first.click()
    await page.wait_for_selector("#approve")
    assert demo_target.metric("demo_restarts_total") == 0  # nothing ran before the approval
    await page.click("#approve")
    await page.locator("#incident-state", has_text="resolved").wait_for(timeout=WAIT_MS)
    await page.locator(".verification", has_text="passed").wait_for(timeout=WAIT_MS)
    assert demo_target.metric("demo_restarts_total") == 1
    assert "admin:token" in await page.locator("#timeline").inner_text()
    await shot(page, "console-incident", full_page=True)

    # the kill switch: the next alert is held, not run
    await page.goto(f"{base}/console")
    await page.click("#toggle-global")
    await page.locator("#global-state", has_text="paused").wait_for()
    demo_target.inject(memory_growth_bytes_per_second=3_000_000)
    held = page.locator("tr.incident", has_text="remediation is paused")
    await held.wait_for(timeout=WAIT_MS)
    assert await held.locator("td.state").inner_text() == "open"
    await shot(page, "console-paused")
    await asyncio.sleep(2)  # a sweep or two: still held
    assert demo_target.metric("demo_restarts_total") == 1

    await page.goto(f"{base}/console/audit")
    audit = await page.locator("table.audit").inner_text()
    assert "incident.approve" in audit and "control.pause" in audit and "admin:token" in audit
    await shot(page, "console-audit")
    html = await page.content()
    assert ADMIN_TOKEN not in html and WEBHOOK_TOKEN not in html


async def test_refused_without_a_session_and_with_a_forged_csrf_token(
        make_config: Any, start_console: Any, browser_page: Any) -> None:
    page = browser_page
    client = await start_console(make_config([procedure("fix")]))
    base = str(client.make_url("")).rstrip("/")
    store = client.server.app[STORE]

    await page.goto(f"{base}/console")
    assert page.url == f"{base}/console/login"
    no_session = await page.request.post(f"{base}/console/control/pause", form={"csrf": "x"})
    assert no_session.status == 403 and "sign in first" in await no_session.text()

    await sign_in(page, base, WEBHOOK_TOKEN)  # the webhook's token is not an admin's
    assert "invalid credentials" in await page.locator(".error").inner_text()

    await sign_in(page, base)
    assert page.url == f"{base}/console"
    await page.eval_on_selector_all("input[name=csrf]", "els => els.forEach(e => e.value = 'forged')")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.click("#toggle-global")
    assert (await answer.value).status == 403
    assert "CSRF" in await page.locator(".error").inner_text()
    assert store.paused() is None  # nothing changed
