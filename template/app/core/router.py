"""Operational endpoints: `GET /health` (open) and `GET /metrics` (open, or an ops key)."""

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from app.core.database import check_database
from app.core.metrics import render_metrics
from app.core.migrate import schema_problem
from app.core.security import MetricsScope, Public
from app.tasks import check_backend

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, Literal["ok", "down", "behind"]]
    # Why a component is not ok, when the fix is the operator's (a schema left behind).
    reasons: dict[str, str] = {}


# Open to load balancers: it tells only whether each component answers, nothing private.
@router.get("/health", response_model=Health, dependencies=[Public])
async def health(response: Response) -> Health:
    components: dict[str, str] = {}
    reasons = {}
    database_up = await run_in_threadpool(check_database)
    components["database"] = "ok" if database_up else "down"
    if database_up:
        # Code newer than its tables would answer 500s while `SELECT 1` passes.
        try:
            problem = await run_in_threadpool(schema_problem)
        except Exception:  # the database went away between the two checks
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
    healthy = all(state == "ok" for state in components.values())
    if not healthy:
        response.status_code = 503  # load balancers take the instance out of rotation
    return Health(status="ok" if healthy else "degraded", components=components, reasons=reasons)


@router.get("/metrics", include_in_schema=False, dependencies=[MetricsScope])
async def metrics() -> Response:
    body, content_type = await run_in_threadpool(render_metrics)
    return Response(body, media_type=content_type)
