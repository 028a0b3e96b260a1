"""Typed aiohttp application keys shared by the remediator's handlers.

Objects that only exist while the app runs (engine, ingest queue) live on app.RUNTIME.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from vigil.remediator.config import RemediatorConfig
    from vigil.remediator.metrics import RemediatorMetrics
    from vigil.remediator.store import Store

CONFIG: web.AppKey[RemediatorConfig] = web.AppKey("config")
STORE: web.AppKey[Store] = web.AppKey("store")
METRICS: web.AppKey[RemediatorMetrics] = web.AppKey("metrics")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
