"""The request recorder (bounded buffer, batched writes off the request path) and the log queries."""

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import ColumnElement, case, func, insert, select
from sqlalchemy.orm import Session

from app.core.database import get_engine, utcnow
from app.features.request_logging.config import get_request_log_settings
from app.features.request_logging.metrics import RECORDS_DROPPED, RECORDS_WRITTEN
from app.features.request_logging.models import ConversationMessage, RequestRecord
from app.features.request_logging.schemas import (
    MessageRead,
    Page,
    RequestRecordRead,
    RequestStats,
    RouteStats,
)

logger = logging.getLogger(__name__)

Record = dict[str, Any]
# Where the middleware finds the running recorder: the app's lifespan state.
STATE_KEY = "request_recorder"
PERCENTILES = (50, 95, 99)


def write_records(records: Sequence[Record]) -> None:
    """Insert a batch of records in a single transaction (called in a worker thread)."""
    with get_engine().begin() as connection:
        connection.execute(insert(RequestRecord), list(records))


class RequestRecorder:
    """A bounded buffer of request records that one background task writes in batches.

    Everything except the database write runs on the event loop, so the buffer needs no
    lock, and recording a request costs an append: it never waits for the database.
    """

    def __init__(
        self,
        buffer_size: int,
        batch_size: int,
        flush_interval: float,
        write: Callable[[list[Record]], None] = write_records,
    ) -> None:
        # A full deque drops its oldest item on append: memory stays bounded under overload.
        self._buffer: deque[Record] = deque(maxlen=buffer_size)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._write = write
        self._wake = asyncio.Event()
        self._stopping = False
        self._flusher: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, record: Record) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            RECORDS_DROPPED.labels("overflow").inc()  # the append pushes the oldest out
        self._buffer.append(record)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()  # a full batch is worth writing now, not at the next tick

    async def flush(self, *, full_batches_only: bool = False) -> None:
        """Write what is buffered, one transaction per batch; on failure keep it for later."""
        smallest = self._batch_size if full_batches_only else 1
        while len(self._buffer) >= smallest:
            size = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(size)]
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception:
                logger.exception("could not write %d request records, will retry", len(batch))
                self._put_back(batch)
                return
            RECORDS_WRITTEN.inc(len(batch))

    def _put_back(self, batch: list[Record]) -> None:
        """Return a failed batch to the front: it is the oldest data, so the first to drop."""
        room = (self._buffer.maxlen or 0) - len(self._buffer)
        kept = batch[max(0, len(batch) - room) :]
        RECORDS_DROPPED.labels("overflow").inc(len(batch) - len(kept))
        self._buffer.extendleft(reversed(kept))

    def start(self) -> None:
        self._flusher = asyncio.get_running_loop().create_task(self._run(), name="request-log")

    async def stop(self) -> None:
        """End the flusher and write what is left (at shutdown, after the last request)."""
        self._stopping = True
        self._wake.set()
        if self._flusher is not None:
            await self._flusher
        await self.flush()
        if self._buffer:
            RECORDS_DROPPED.labels("shutdown").inc(len(self._buffer))
            logger.error("shutdown lost %d request records", len(self._buffer))
            self._buffer.clear()

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
                ticked = False
            except TimeoutError:
                ticked = True
            self._wake.clear()
            if self._stopping:
                return
            # A full batch woke us: write full batches; the rest waits for the tick (or the
            # next batch), so a steady stream does not turn into many tiny transactions.
            await self.flush(full_batches_only=not ticked)


@asynccontextmanager
async def recorder_lifespan(_app: FastAPI) -> AsyncIterator[dict[str, RequestRecorder]]:
    """One recorder per running app: its flusher starts and stops (flushing) with the app."""
    settings = get_request_log_settings()
    recorder = RequestRecorder(
        settings.buffer_size, settings.batch_size, settings.flush_interval_seconds
    )
    recorder.start()
    try:
        yield {STATE_KEY: recorder}
    finally:
        await recorder.stop()


def list_requests(
    session: Session,
    *,
    path: str | None,
    route: str | None,
    status: int | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> Page[RequestRecordRead]:
    """Records matching every given filter, newest first (`since` in UTC, or naive UTC)."""
    conditions: list[ColumnElement[bool]] = []
    if path is not None:
        conditions.append(RequestRecord.path == path)
    if route is not None:
        conditions.append(RequestRecord.route == route)
    if status is not None:
        conditions.append(RequestRecord.status == status)
    if since is not None:
        conditions.append(RequestRecord.created_at >= since)
    total = session.scalar(select(func.count()).select_from(RequestRecord).where(*conditions))
    rows = session.scalars(
        select(RequestRecord)
        .where(*conditions)
        .order_by(RequestRecord.created_at.desc(), RequestRecord.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return Page(
        items=[RequestRecordRead.model_validate(row) for row in rows],
        total=total or 0,
        limit=limit,
        offset=offset,
    )


def nearest_rank(sorted_values: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile: the value at rank ceil(percent/100 * n), counting from 1.

    It is always a latency that was observed, and PostgreSQL's `percentile_disc` agrees.
    """
    rank = (percent * len(sorted_values) + 99) // 100  # integer ceil, no float rounding
    return sorted_values[max(rank, 1) - 1]


def request_stats(
    session: Session, window_seconds: int, *, limit: int, offset: int
) -> RequestStats:
    """Per route over the last `window_seconds`, busiest first: count, 5xx rate, percentiles.

    Counts and errors are aggregated in SQL over the whole window. Percentiles need the
    latencies themselves: each route on the page reads at most its most recent
    `stats_sample_size` (through the route/method/time index), so the work per call is
    bounded however many requests the window holds.
    """
    since = utcnow() - timedelta(seconds=window_seconds)
    in_window = RequestRecord.created_at >= since
    count = func.count().label("count")
    routes = (
        select(
            RequestRecord.method,
            RequestRecord.route,
            count,
            func.sum(case((RequestRecord.status >= 500, 1), else_=0)).label("errors"),
        )
        .where(in_window)
        .group_by(RequestRecord.method, RequestRecord.route)
    )
    total = session.scalar(select(func.count()).select_from(routes.subquery()))
    page = session.execute(
        routes.order_by(count.desc(), func.coalesce(RequestRecord.route, ""), RequestRecord.method)
        .limit(limit)
        .offset(offset)
    )
    sample_size = get_request_log_settings().stats_sample_size
    items = []
    for method, route, requests, errors in page:
        same_route = (
            RequestRecord.route.is_(None) if route is None else RequestRecord.route == route
        )
        latencies = sorted(
            session.scalars(
                select(RequestRecord.latency_ms)
                .where(in_window, same_route, RequestRecord.method == method)
                .order_by(RequestRecord.created_at.desc())
                .limit(sample_size)
            )
        )
        p50, p95, p99 = (nearest_rank(latencies, percent) for percent in PERCENTILES)
        items.append(
            RouteStats(
                method=method,
                route=route,
                count=requests,
                errors=errors,
                error_rate=errors / requests,
                sampled=len(latencies),
                p50_ms=p50,
                p95_ms=p95,
                p99_ms=p99,
            )
        )
    return RequestStats(
        window_seconds=window_seconds,
        since=since,
        items=items,
        total=total or 0,
        limit=limit,
        offset=offset,
    )


def list_messages(
    session: Session, conversation_id: str, *, limit: int, offset: int
) -> Page[MessageRead]:
    """A conversation's saved messages in the order the API accepted them."""
    condition = ConversationMessage.conversation_id == conversation_id
    total = session.scalar(select(func.count()).select_from(ConversationMessage).where(condition))
    rows = session.scalars(
        select(ConversationMessage)
        .where(condition)
        .order_by(ConversationMessage.created_at, ConversationMessage.id)
        .limit(limit)
        .offset(offset)
    )
    items = [
        MessageRead(
            id=row.id,
            conversation_id=row.conversation_id,
            role=row.role,
            content=row.content,
            metadata=row.metadata_,
            request_id=row.request_id,
            created_at=row.created_at,
        )
        for row in rows
    ]
    return Page(items=items, total=total or 0, limit=limit, offset=offset)
