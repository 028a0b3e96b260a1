"""NAB standard-profile scoring, as published (rules: ../shared/nab/README.md).

Scoring is row by row; a run of consecutive alerting rows is one detection at its first row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "STANDARD",
    "FileScore",
    "Profile",
    "load_labels",
    "normalised_score",
    "score_file",
    "window_rows",
]


@dataclass(frozen=True)
class Profile:
    """Weights of true positives, false positives and false negatives."""

    a_tp: float = 1.0
    a_fp: float = 0.11
    a_fn: float = 1.0


STANDARD = Profile()


@dataclass
class FileScore:
    """One file's raw score and its counts."""

    raw: float
    windows: int
    tp: int
    fp: int
    fn: int


def _sigmoid(p: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0


def load_labels(path: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Read a labels JSON: {"<relative path>": [[start, end], ...]}."""
    data = json.loads(Path(path).read_text())
    return {k.replace("\\", "/"): [(str(a), str(b)) for a, b in v] for k, v in data.items()}


def window_rows(timestamps: np.ndarray, windows: list[tuple[np.datetime64, np.datetime64]]
                ) -> list[tuple[int, int]]:
    """Map each (start, end) window to the first and last row index inside it."""
    out = []
    for start, end in windows:
        lo = int(np.searchsorted(timestamps, start, side="left"))
        hi = int(np.searchsorted(timestamps, end, side="right")) - 1
        if hi >= lo:
            out.append((lo, hi))
    return out


def score_file(alerts: np.ndarray, windows: list[tuple[int, int]],
               profile: Profile = STANDARD) -> FileScore:
    """Score one file's 0/1 alert column against its label windows (row indices, inclusive)."""
    alerts = np.asarray(alerts).astype(bool)
    n = len(alerts)
    probation = min(math.floor(0.15 * n), 750)
    starts = np.nonzero(alerts & ~np.concatenate([[False], alerts[:-1]]))[0]
    detections = [int(i) for i in starts if i >= probation]
    windows = sorted(windows)
    raw, tp, fp = 0.0, 0, 0
    hit = [False] * len(windows)
    for i in detections:
        inside = next((k for k, (lo, hi) in enumerate(windows) if lo <= i <= hi), None)
        if inside is not None:
            if hit[inside]:
                continue  # only the earliest detection in a window counts
            lo, hi = windows[inside]
            width = hi - lo + 1
            pos = -(hi - i + 1) / width
            raw += profile.a_tp * _sigmoid(pos) / _sigmoid(-1.0)
            hit[inside] = True
            tp += 1
            continue
        prev = [(lo, hi) for lo, hi in windows if hi < i]
        if not prev:
            raw -= profile.a_fp
        else:
            lo, hi = prev[-1]
            width = hi - lo + 1
            pos = abs(i - hi) / max(width - 1, 1)
            raw += profile.a_fp * (-1.0 if pos > 3 else _sigmoid(pos))
        fp += 1
    fn = hit.count(False)
    raw -= profile.a_fn * fn
    return FileScore(raw=raw, windows=len(windows), tp=tp, fp=fp, fn=fn)


def normalised_score(scores: list[FileScore], profile: Profile = STANDARD) -> float:
    """100 * (raw - null) / (perfect - null) over all files."""
    windows = sum(s.windows for s in scores)
    if windows == 0:
        return math.nan
    raw = sum(s.raw for s in scores)
    null = -profile.a_fn * windows
    perfect = profile.a_tp * windows
    return 100.0 * (raw - null) / (perfect - null)
