"""Group-commit ingest: webhook handlers queue parsed notifications, one writer commits batches.

Each handler waits until the transaction holding its notification has committed, so a 2xx
always means "durably stored"; batching lets one commit (one fsync) acknowledge many posts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from vigil.remediator.matching import Match
from vigil.remediator.payload import ParsedNotification
from vigil.remediator.store import IngestResult, Store, store_unavailable

__all__ = ["IngestQueue"]

log = logging.getLogger("vigil.remediator.ingest")
Item = tuple[ParsedNotification, list[Match], bool]


class IngestQueue:
    def __init__(self, store: Store, on_committed: Callable[[list[IngestResult]], Awaitable[None]],
                 *, max_batch: int = 256, writers: int | None = None) -> None:
        self.store = store
        self.on_committed = on_committed
        self.max_batch = max_batch
        # PostgreSQL commits concurrent transactions together (and overlaps their fsyncs), so
        # two writers pipeline; SQLite serialises writers anyway.
        self.writers = writers or (2 if store.dialect == "postgresql" else 1)
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[IngestResult]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, item: Item) -> IngestResult:
        """Queue a notification; return once it is committed (raise if the store failed)."""
        fut: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((item, fut))
        return await fut

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(RuntimeError("remediator is shutting down"))

    def _ingest(self, items: list[Item]) -> list[IngestResult]:
        """Write a batch; retry once if PostgreSQL chose it as a deadlock victim."""
        try:
            return self.store.ingest(items)
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) not in ("40P01", "40001"):
                raise
            log.info("ingest batch retried after %s", exc.orig.__class__.__name__)
            return self.store.ingest(items)

    async def _one_by_one(self, batch: list[tuple[Item, asyncio.Future[IngestResult]]]) -> None:
        for item, fut in batch:
            try:
                (result,) = await asyncio.to_thread(self._ingest, [item])
            except Exception as exc:  # noqa: BLE001 - this waiter answers 5xx
                if not fut.done():
                    fut.set_exception(exc)
                continue
            if not fut.done():
                fut.set_result(result)
            try:
                await self.on_committed([result])
            except Exception:
                log.exception("scheduling after commit failed")

    async def _writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._ingest, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiter answers 5xx
                log.error("store write failed: %s", exc.__class__.__name__)
                if len(batch) > 1 and not store_unavailable(exc):
                    # the store is up but refused something: write the items one by one so
                    # only the refused one fails
                    await self._one_by_one(batch)
                    continue
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            try:
                await self.on_committed(results)
            except Exception:
                log.exception("scheduling after commit failed")
