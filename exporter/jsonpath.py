"""A tiny JSON path subset for expectations and captures: `$.items[0].id`, `$.name`, `$[2]`.

Only child keys and list indexes; no wildcards or filters, so a path names one value.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MISSING", "JsonPathError", "parse_path", "resolve"]

_TOKEN = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\"([^\"]*)\"\]|\['([^']*)'\]")


class JsonPathError(ValueError):
    """A JSON path is not in the supported subset."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def parse_path(path: str) -> list[str | int]:
    """Split `$.a[0].b` into ['a', 0, 'b']; raise JsonPathError on anything else."""
    if not path.startswith("$"):
        raise JsonPathError("a JSON path starts with '$', e.g. $.items[0].id")
    parts: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise JsonPathError(
                f'unsupported JSON path syntax at character {pos + 1}: use .key, [index] or ["key"]'
            )
        key, index, dq, sq = match.groups()
        if index is not None:
            parts.append(int(index))
        else:
            parts.append(key if key is not None else (dq if dq is not None else sq))
        pos = match.end()
    return parts


def resolve(document: Any, path: str) -> Any:
    """The value at path in document, or MISSING."""
    node = document
    for part in parse_path(path):
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return MISSING
            node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
    return node
