"""A demo target shared by the tests of one module, reset to its baseline after each test.

Starting the demo target takes about two seconds; the parametrized CORS cases each inject a
fault and restore it, so they can share one process and keep the suite short.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.demo.client import DemoTarget, start_demo_target

from tests.exporter.helpers import restore_target
from tests.exporter.servers import Servers


@pytest.fixture(scope="module")
def _module_demo_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoTarget]:
    target = start_demo_target(tmp_path_factory.mktemp("shared-demo-target"))
    try:
        target.process.wait_ready(30)
        yield target
    finally:
        target.process.stop()


@pytest.fixture
def shared_demo_target(_module_demo_target: DemoTarget) -> Iterator[DemoTarget]:
    """The module's demo target; faults and config drift are undone after the test."""
    yield _module_demo_target
    restore_target(_module_demo_target)


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Third-party framework servers on loopback, stopped after the test."""
    started = Servers()
    try:
        yield started
    finally:
        started.close()
