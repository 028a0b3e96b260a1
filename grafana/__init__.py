"""Vigil grafana."""
