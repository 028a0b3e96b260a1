"""The OpenAPI 3 document served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

__all__ = ["OPENAPI"]

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema:
        body["content"] = {"application/json": {"schema": schema}}
    return body


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "vigil-remediator", "version": "1",
             "description": "Alertmanager webhook receiver and incident admin API."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                            "basic": {"type": "http", "scheme": "basic"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"status": {"type": "string"},
                                                       "error": {"type": "string"}}},
            "Incident": {"type": "object", "properties": {
                "id": {"type": "integer"}, "alertname": {"type": "string"},
                "fingerprint": {"type": "string"}, "procedure": {"type": "string", "nullable": True},
                "state": {"type": "string", "enum": ["open", "awaiting_approval", "remediating",
                                                     "resolved", "failed", "escalated"]},
                "reason": {"type": "string"}, "params": {"type": "object"},
                "opened_at": {"type": "string", "format": "date-time"}}},
            "Evidence": {"type": "object", "properties": {
                "kind": {"type": "string", "enum": ["first_started", "started_later", "dependency",
                                                    "dependent", "symptom_class", "derived_signal", "finding",
                                                    "anomaly", "procedure"]},
                "weight": {"type": "number"}, "detail": {"type": "string"}}},
            "RankedCause": {"type": "object", "properties": {
                "incident": {"type": "integer"}, "alertname": {"type": "string"},
                "service": {"type": "string"}, "starts_at": {"type": "string", "format": "date-time"},
                "score": {"type": "number"},
                "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
                "is_this_incident": {"type": "boolean"}}},
            "IncidentDetail": {"type": "object", "properties": {
                "incident": {"$ref": "#/components/schemas/Incident"},
                "alert": {"type": "object"}, "attempts": {"type": "array", "items": {"type": "object"}},
                "timeline": {"type": "array", "items": {"type": "object"}},
                "group": {"type": "object", "nullable": True, "properties": {
                    "id": {"type": "integer"}, "opened_at": {"type": "string", "format": "date-time"},
                    "services": {"type": "array", "items": {"type": "string"}},
                    "members": {"type": "array", "items": {"type": "object", "properties": {
                        "incident": {"type": "integer"}, "alertname": {"type": "string"},
                        "state": {"type": "string"}, "service": {"type": "string"}}}},
                    "ranking": {"type": "array", "items": {"$ref": "#/components/schemas/RankedCause"}}}},
                "root_cause": {"allOf": [{"$ref": "#/components/schemas/RankedCause"}], "nullable": True},
                "signature": {"type": "string"},
                "findings": {"type": "array", "items": {"type": "string"}},
                "similar": {"type": "array", "items": {"type": "object", "properties": {
                    "incident": {"type": "integer"}, "similarity": {"type": "number"},
                    "state": {"type": "string"}, "reason": {"type": "string"},
                    "procedure": {"type": "string", "nullable": True},
                    "fixed_by": {"type": "string", "nullable": True}}}},
                "recommendation": {"type": "object", "nullable": True, "properties": {
                    "signature": {"type": "string"}, "procedure": {"type": "string", "nullable": True},
                    "success_rate": {"type": "number", "nullable": True}, "reason": {"type": "string"},
                    "past_incidents": {"type": "integer"},
                    "procedures": {"type": "array", "items": {"type": "object"}},
                    "flagged": {"type": "array", "items": {"type": "string"}}}},
                "impact": {"type": "object", "nullable": True, "properties": {
                    "start": {"type": "string"}, "end": {"type": "string"},
                    "duration_seconds": {"type": "number"}, "failed_requests": {"type": "number"},
                    "total_requests": {"type": "number"},
                    "error_ratio": {"type": "number", "nullable": True},
                    "error_budget_burned": {"type": "number"}, "error": {"type": "string"}}}}},
            "WebhookPayload": {"type": "object", "required": ["version", "status", "receiver",
                                                              "groupKey", "alerts"],
                               "description": "Alertmanager webhook payload, version 4"},
        },
    },
    "security": [{"bearer": []}, {"basic": []}],
    "paths": {
        "/api/v1/alerts": {"post": {
            "summary": "Receive an Alertmanager notification (payload version 4)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "$ref": "#/components/schemas/WebhookPayload"}}}},
            "responses": {"200": _ok("stored; per-alert outcome (new, duplicate, resolved, unmatched)"),
                          "400": _ERROR, "401": _ERROR, "413": _ERROR, "415": _ERROR,
                          "503": _ERROR}}},
        "/api/v1/incidents": {"get": {
            "summary": "List incidents, newest first",
            "parameters": [
                {"name": n, "in": "query", "schema": {"type": t}} for n, t in
                (("state", "string"), ("procedure", "string"), ("alertname", "string"),
                 ("since", "string"), ("limit", "integer"), ("offset", "integer"))],
            "responses": {"200": _ok("incidents", {"type": "object", "properties": {
                "incidents": {"type": "array", "items": {"$ref": "#/components/schemas/Incident"}}}}),
                "400": _ERROR, "401": _ERROR, "403": _ERROR}}},
        "/api/v1/incidents/{id}": {"get": {
            "summary": "An incident with its alert, attempts (per-step results), timeline, "
                       "correlation group, ranked root cause, similar incidents, recommended "
                       "procedure and impact",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _ok("incident", {"$ref": "#/components/schemas/IncidentDetail"}),
                          "401": _ERROR, "404": _ERROR}}},
        "/api/v1/incidents/{id}/approve": {"post": {
            "summary": "Approve an incident awaiting approval; its procedure is then run",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"202": _ok("approved"), "401": _ERROR, "404": _ERROR, "409": _ERROR}}},
        "/api/v1/incidents/{id}/deny": {"post": {
            "summary": "Deny an incident awaiting approval: nothing runs, it is escalated",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {"200": _ok("denied"), "401": _ERROR, "404": _ERROR, "409": _ERROR}}},
        "/api/v1/control/procedures/{name}/pause": {"post": {
            "summary": "Pause one procedure: its incidents stay open",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("paused"), "401": _ERROR, "404": _ERROR}}},
        "/api/v1/control/procedures/{name}/resume": {"post": {
            "summary": "Resume one paused procedure",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _ok("resumed"), "401": _ERROR, "404": _ERROR}}},
        "/api/v1/control": {"get": {"summary": "Kill switch and dry-run status",
                                    "responses": {"200": _ok("status"), "401": _ERROR}}},
        "/api/v1/control/pause": {"post": {"summary": "Pull the kill switch: start no new remediation",
                                           "responses": {"200": _ok("paused"), "401": _ERROR}}},
        "/api/v1/control/resume": {"post": {"summary": "Release the kill switch",
                                            "responses": {"200": _ok("resumed"), "401": _ERROR}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "responses": {"200": _ok("OpenAPI 3 document")}}},
    },
}
