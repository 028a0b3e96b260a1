"""Incident intelligence: correlation, root-cause ranking, similar incidents, impact (docs/incidents.md)."""

from vigil.remediator.intelligence.core import Intelligence, IntelligenceCollector

__all__ = ["Intelligence", "IntelligenceCollector"]
