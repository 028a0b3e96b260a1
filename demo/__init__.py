"""Vigil demo."""
