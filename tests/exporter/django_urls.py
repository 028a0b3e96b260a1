"""The URLconf of the Django app in tests/exporter/servers.py: one JSON route."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path


def items(_: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("api/items", items)]
