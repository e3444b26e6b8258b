"""Operational endpoints: `GET /health` (open) and `GET /metrics` (open, or an ops key)."""

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from app.core.database import check_database
from app.core.metrics import render_metrics
from app.core.security import MetricsScope, Public
from app.jobs.metrics import QueueCollector
from app.tasks import check_backend

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, Literal["ok", "down"]]


# Open to load balancers: it tells only whether each component answers, nothing private.
@router.get("/health", response_model=Health, dependencies=[Public])
async def health(response: Response) -> Health:
    components = {"database": "ok" if await run_in_threadpool(check_database) else "down"}
    components.update(await check_backend())
    healthy = all(state == "ok" for state in components.values())
    if not healthy:
        response.status_code = 503  # load balancers take the instance out of rotation
    return Health(status="ok" if healthy else "degraded", components=components)


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsScope])
async def metrics() -> Response:
    body, content_type = await run_in_threadpool(render_metrics, [QueueCollector()])
    return Response(body, media_type=content_type)
