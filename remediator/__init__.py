"""Vigil remediator."""
