"""Injectable faults and the recovery controls procedures use, with the state they touch."""

from __future__ import annotations

import asyncio
import logging
import mmap
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

__all__ = ["DiskSpool", "FaultError", "Faults", "MemoryLeak", "PoolHog"]

log = logging.getLogger("vigil.demo.faults")

CHUNK = 1024 * 1024  # leak and spool in 1 MiB steps


class FaultError(ValueError):
    """A fault request named an unknown field or gave a bad value."""


@dataclass
class Faults:
    """The runtime faults currently injected."""

    error_rate: float = 0.0
    latency_seconds: float = 0.0
    latency_growth_seconds_per_second: float = 0.0
    memory_growth_bytes_per_second: int = 0
    pool_exhaustion: bool = False
    pool_leak_connections_per_second: float = 0.0
    disk_growth_bytes_per_second: int = 0
    downstream_errors: bool = False

    NUMERIC_LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "error_rate": (0.0, 1.0),
        "latency_seconds": (0.0, 30.0),
        "latency_growth_seconds_per_second": (0.0, 1.0),
        "memory_growth_bytes_per_second": (0, 64 * CHUNK),
        "disk_growth_bytes_per_second": (0, 64 * CHUNK),
        "pool_leak_connections_per_second": (0.0, 10.0),
    }

    def update(self, data: dict[str, Any]) -> None:
        """Apply the runtime fields of a fault request; raise FaultError on a bad one."""
        for key, value in data.items():
            if key in ("pool_exhaustion", "downstream_errors"):
                if not isinstance(value, bool):
                    raise FaultError(f"{key}: expected a boolean")
                setattr(self, key, value)
            elif key in self.NUMERIC_LIMITS:
                low, high = self.NUMERIC_LIMITS[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise FaultError(f"{key}: expected a number")
                if not low <= value <= high:
                    raise FaultError(f"{key}: must be between {low} and {high}")
                setattr(self, key, type(getattr(self, key))(value))
            elif key not in ("cors_drift", "config_patch"):
                raise FaultError(f"unknown fault {key!r}")

    def active(self) -> dict[str, bool]:
        return {
            "error_rate": self.error_rate > 0,
            "latency": self.latency_seconds > 0,
            "latency_growth": self.latency_growth_seconds_per_second > 0,
            "memory_growth": self.memory_growth_bytes_per_second > 0,
            "pool_exhaustion": self.pool_exhaustion,
            "pool_leak": self.pool_leak_connections_per_second > 0,
            "disk_growth": self.disk_growth_bytes_per_second > 0,
            "downstream_errors": self.downstream_errors,
        }

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "error_rate", "latency_seconds", "latency_growth_seconds_per_second",
            "memory_growth_bytes_per_second", "pool_exhaustion",
            "pool_leak_connections_per_second", "disk_growth_bytes_per_second", "downstream_errors")}

    def should_fail(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate


@dataclass
class MemoryLeak:
    """Really holds memory, so process_resident_memory_bytes moves as a leak would.

    Blocks are anonymous mmaps rather than bytearrays: glibc may keep freed heap memory,
    and a restart must visibly give the memory back, as a real one does.
    """

    blocks: list[mmap.mmap] = field(default_factory=list)
    carry: float = 0.0

    @property
    def size(self) -> int:
        return len(self.blocks) * CHUNK

    def grow(self, nbytes: float, cap: int) -> None:
        self.carry += nbytes
        page = b"\x01" * 1
        while self.carry >= CHUNK and self.size + CHUNK <= cap:
            block = mmap.mmap(-1, CHUNK)
            for offset in range(0, CHUNK, mmap.PAGESIZE):  # touch every page so it is resident
                block[offset:offset + 1] = page
            self.blocks.append(block)
            self.carry -= CHUNK

    def free(self) -> None:
        for block in self.blocks:
            block.close()
        self.blocks.clear()
        self.carry = 0.0


@dataclass
class DiskSpool:
    """Spool files in the state dir that grow like an unrotated log."""

    directory: Path
    carry: float = 0.0

    def usage(self) -> int:
        if not self.directory.exists():
            return 0
        return sum(p.stat().st_size for p in self.directory.glob("spool-*.log"))

    def grow(self, nbytes: float, capacity: int) -> None:
        self.carry += nbytes
        whole = int(self.carry)
        if whole <= 0:
            return
        whole = min(whole, max(0, capacity - self.usage()))
        self.carry -= int(self.carry)
        if whole == 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        files = sorted(self.directory.glob("spool-*.log"))
        path = files[-1] if files and files[-1].stat().st_size < 16 * CHUNK else \
            self.directory / f"spool-{len(files):05d}.log"
        with path.open("ab") as fh:
            fh.write(b"x" * whole)

    def cleanup(self) -> int:
        freed = 0
        for path in self.directory.glob("spool-*.log"):
            freed += path.stat().st_size
            path.unlink()
        self.carry = 0.0
        return freed


@dataclass
class PoolHog:
    """Checks out every pool connection and holds it, as a connection leak would."""

    held: list[sa.Connection] = field(default_factory=list)
    carry: float = 0.0

    def exhaust(self, engine: sa.Engine, size: int) -> None:
        while len(self.held) < size:
            try:
                self.held.append(engine.connect())
            except sa.exc.TimeoutError:
                break

    def leak(self, engine: sa.Engine, connections: float, size: int) -> None:
        """Check out and keep `connections` more (fractions carry over), at most `size` held:
        a code path that forgets to return its connection, once in a while."""
        self.carry += connections
        while self.carry >= 1.0 and len(self.held) < size:
            self.carry -= 1.0
            try:
                self.held.append(engine.connect())
            except sa.exc.TimeoutError:
                break

    def release(self) -> None:
        for conn in self.held:
            try:
                conn.close()
            except sa.exc.SQLAlchemyError:
                log.warning("could not close a held connection")
        self.held.clear()
        self.carry = 0.0


async def tick(app_state: Any, interval: float = 0.5) -> None:
    """Advance time-driven faults (memory growth, disk growth, pool exhaustion)."""
    while True:
        await asyncio.sleep(interval)
        app_state.advance(interval)
