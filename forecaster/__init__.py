"""Vigil forecaster."""
