"""Crash points for the crash tests: the process SIGKILLs itself at a named point.

Enabled only by the test-only environment variable VIGIL_REMEDIATOR_CRASH_AT=<point>; unset
(always, outside tests) `crash_point` is a dictionary-free string comparison. The points sit
between a step's effect and the incident's transition, where a crash used to leave
incidents stuck (tests/reliability/test_crash.py).
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "crash_point"]

POINTS = ("step-returned", "step-recorded", "escalation-sent", "before-final-record",
          "after-final-record")
_ARMED = os.environ.get("VIGIL_REMEDIATOR_CRASH_AT", "")


def crash_point(name: str) -> None:
    """SIGKILL this process if the test armed `name` (no clean-up, exactly like a crash)."""
    if _ARMED and _ARMED == name:
        os.kill(os.getpid(), signal.SIGKILL)
