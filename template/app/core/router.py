"""Operational endpoints: `GET /health` (open) and `GET /metrics` (open, or an ops key)."""

import asyncio
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from app.core.metrics import render_metrics
from app.core.migrate import schema_problem
from app.core.security import MetricsScope, Public
from app.jobs.service import get_job_store
from app.tasks import check_backend

WRITE_PROBE_SECONDS = 5.0  # a write slower than this is a database load balancers avoid
HEALTH_CHECK_PREFIX = "health:"


def health_check(name: str) -> str:
    """The lifespan state key under which a feature yields a check of a component it uses.

    A router's lifespan yields `{health_check("cache"): cache.ping}` (an async callable
    answering whether the component works), and `/health` reports `"cache"` beside the
    core's components: the core names no feature.
    """
    return HEALTH_CHECK_PREFIX + name


router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, Literal["ok", "down", "behind"]]
    # Why a component is not ok, when the fix is the operator's (a schema left behind).
    reasons: dict[str, str] = {}


# Open to load balancers: it tells only whether each component answers, nothing private.
@router.get("/health", response_model=Health, dependencies=[Public])
async def health(request: Request, response: Response) -> Health:
    components: dict[str, str] = {}
    reasons = {}
    # A write, not `SELECT 1`: a database that answers reads and refuses writes is down.
    try:
        async with asyncio.timeout(WRITE_PROBE_SECONDS):
            writes = await get_job_store().writes_commit()
    except TimeoutError:
        writes = False
    components["database"] = "ok" if writes else "down"
    # Code newer than its tables would answer 500s while the database itself is fine.
    try:
        problem = await run_in_threadpool(schema_problem)
    except Exception:  # the database is down: the line above says so already
        components["schema"] = "down"
    else:
        components["schema"] = "behind" if problem else "ok"
        if problem:
            # What to do, not which revisions: this endpoint is open to anyone.
            reasons["schema"] = (
                "the database schema is older than this code: run `python -m "
                "app.core.migrate` (or start with MIGRATE_ON_START=true)"
            )
    components.update(await check_backend())
    for key, check in request.scope.get("state", {}).items():
        if key.startswith(HEALTH_CHECK_PREFIX):
            components[key.removeprefix(HEALTH_CHECK_PREFIX)] = "ok" if await check() else "down"
    healthy = all(state == "ok" for state in components.values())
    if not healthy:
        response.status_code = 503  # load balancers take the instance out of rotation
    return Health(status="ok" if healthy else "degraded", components=components, reasons=reasons)


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsScope])
async def metrics() -> Response:
    body, content_type = await run_in_threadpool(render_metrics)
    return Response(body, media_type=content_type)
