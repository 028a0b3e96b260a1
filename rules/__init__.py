"""Vigil's Prometheus rules, their promtool tests and the runbook, shipped as package data."""
