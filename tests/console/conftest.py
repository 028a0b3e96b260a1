"""Console fixtures: the remediator's own (real app on a loopback port), a signed-in helper,
and Playwright on Debian's chromium with a screenshot kept for every failing browser test."""

from __future__ import annotations

import io
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import REPO_ROOT, in_ci
from tests.remediator.conftest import make_config, secrets_dir, start_remediator

__all__ = ["make_config", "secrets_dir", "start_remediator"]

CHROMIUM = os.environ.get("VIGIL_CHROMIUM", "/usr/bin/chromium")
FAILURES = REPO_ROOT / "test-screenshots"
# where the docs' screenshots are written (docs/console.md); unset: a temp dir
DOCS_IMG = os.environ.get("VIGIL_CONSOLE_SCREENSHOTS")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.failed
    return report


_OUTCOME = pytest.StashKey[bool]()


@pytest.fixture
async def browser_page(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A Playwright page in Debian's chromium (downloads are impossible: executable_path)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        if in_ci():
            pytest.fail(f"playwright is not installed: {exc}", pytrace=False)
        pytest.skip("playwright is not installed")
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).exists()):
        if in_ci():
            pytest.fail(f"{CHROMIUM} not found: install the chromium package", pytrace=False)
        pytest.skip(f"{CHROMIUM} not found: install the chromium package")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                           args=["--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1100, "height": 760})
        try:
            yield page
        finally:
            if request.node.stash.get(_OUTCOME, False):
                FAILURES.mkdir(exist_ok=True)
                name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
                await page.screenshot(path=str(FAILURES / f"{name}.png"), full_page=True)
            await browser.close()


@pytest.fixture
def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl): the server's context and the CA file."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if in_ci():
            pytest.fail("openssl not found: install the openssl package", pytrace=False)
        pytest.skip("openssl not found")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "60",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


@pytest.fixture
def start_console(aiohttp_client: Any) -> Any:
    """The real remediator app on loopback, over TLS when given a context."""
    from aiohttp.test_utils import TestServer
    from vigil.remediator.app import create_app
    from vigil.remediator.store import Store

    async def start(config: Any, tls: ssl.SSLContext | None = None) -> Any:
        app = create_app(config, store=Store(config.resolved_database_url()),
                         heartbeat_interval=0.1, sweep_interval=0.5)
        server = TestServer(app)
        await server.start_server(ssl=tls)  # aiohttp_client then uses the started server
        return await aiohttp_client(server)

    return start


@pytest.fixture
def shot(tmp_path: Path) -> Any:
    """shot(page, name): a screenshot for the docs in $VIGIL_CONSOLE_SCREENSHOTS (else a temp
    dir), reduced to a 64-colour palette so that the committed PNGs stay small."""
    from PIL import Image

    out = Path(DOCS_IMG) if DOCS_IMG else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)

    async def take(page: Any, name: str, full_page: bool = False) -> Path:
        raw = await page.screenshot(full_page=full_page)
        path = out / f"{name}.png"
        Image.open(io.BytesIO(raw)).quantize(64).save(path, optimize=True)
        return path

    return take
