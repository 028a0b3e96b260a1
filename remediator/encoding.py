"""Decode a webhook body's Content-Encoding: identity, gzip or deflate, bounded in size.

The server reads bodies raw (aiohttp's own decompression is off): a corrupt stream raised
inside aiohttp's parser, before any handler, and answered 500 with a traceback, and an
encoding without its decoder installed (br, zstd) failed the same way. Here every failure
is a `BodyError` carrying the 4xx status and a one-line reason.
"""

from __future__ import annotations

import zlib

__all__ = ["SUPPORTED", "BodyError", "decode_body"]

SUPPORTED = ("identity", "gzip", "deflate")


class BodyError(ValueError):
    """The body cannot be decoded; `status` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _inflate(raw: bytes, wbits: int, limit: int, name: str) -> bytes:
    d = zlib.decompressobj(wbits=wbits)
    try:
        out = d.decompress(raw, limit + 1)  # at most limit+1 bytes: a bomb stops here
        if len(out) <= limit and not d.unconsumed_tail:
            out += d.flush()
    except zlib.error:
        raise BodyError(400, f"body is not valid {name} data") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyError(413, f"decompressed body larger than {limit} bytes")
    if not d.eof:
        raise BodyError(400, f"{name} body is truncated")
    if d.unused_data:
        raise BodyError(400, f"{name} body has trailing data after the compressed stream")
    return out


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body with its Content-Encoding removed; at most `limit` bytes once decoded."""
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return raw
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        shown = ", ".join(codings)[:60]
        raise BodyError(415, f"Content-Encoding {shown!r} is not supported "
                             f"(use one of {', '.join(SUPPORTED)})")
    if codings[0] == "deflate":
        # RFC 9110's deflate is the zlib format; some clients send raw deflate
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit, "deflate")
        except BodyError as exc:
            if exc.status != 400:
                raise
            return _inflate(raw, -zlib.MAX_WBITS, limit, "deflate")
    return _inflate(raw, 16 + zlib.MAX_WBITS, limit, "gzip")
