"""The reference stack (demo/reference.py) started once for this directory: Kinto on a
PostgreSQL database of its own, Datasette, supervisord, the three exporters, Prometheus,
Alertmanager and vigil-remediator, all real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.demo.reference import EXPORTERS, ReferenceStack
from vigil.demo.scenarios import _human_receivers

from tests.harness import require_binary
from vigil.sink import WebhookReceiver


@pytest.fixture(scope="package")
def human() -> Iterator[WebhookReceiver]:
    sink = WebhookReceiver().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="package")
def reference(tmp_path_factory: pytest.TempPathFactory, postgres_server_url: str,
              human: WebhookReceiver) -> Iterator[ReferenceStack]:
    for binary in ("prometheus", "prometheus-alertmanager", "supervisord", "supervisorctl",
                   *EXPORTERS.values()):
        require_binary(binary)
    # a short path: supervisord's unix socket lives in the workdir
    workdir = Path(tmp_path_factory.mktemp("ref"))
    stack = ReferenceStack(workdir, admin_url=postgres_server_url,
                           am_transform=lambda d: _human_receivers(d, human.url))
    try:
        stack.start(log=print)
        yield stack
    finally:
        for proc in stack.processes:
            print(f"--- {proc.name} ---\n{proc.log_tail(20)}")
        for name in ("kinto", "datasette"):
            log = stack.dir / "logs" / f"{name}.log"
            if log.exists():
                print(f"--- {name} ---\n" + "\n".join(log.read_text().splitlines()[-20:]))
        stack.stop()
