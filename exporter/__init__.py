"""Vigil exporter."""
