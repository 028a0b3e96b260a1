"""The incident console: server-rendered pages at /console, served by the remediator."""

from vigil.remediator.console.views import setup_console

__all__ = ["setup_console"]
