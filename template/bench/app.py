"""The app under benchmark: the real service plus a bare endpoint and a no-op unit of work."""

from fastapi import APIRouter, FastAPI, status

from app.api.router import router as api_router
from app.core.security import ClientScope
from app.main import create_app
from app.tasks import TaskQueueDep, task


@task("bench.noop")
async def noop() -> None:
    """Does nothing, so what is measured is the job plumbing itself."""


# Not rate limited: the benchmark measures the job plumbing at full speed.
router = APIRouter(prefix="/bench", dependencies=[ClientScope])


@router.post("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@router.post("/enqueue", status_code=status.HTTP_202_ACCEPTED)
async def enqueue(queue: TaskQueueDep) -> dict[str, str]:
    return {"job_id": str(await queue.enqueue(noop))}


# Served where a user's own endpoints are (app/api/router.py), so a request walks the same
# routes before it as theirs do: FastAPI scans the routes in order until one matches.
api_router.include_router(router)


def create_bench_app() -> FastAPI:
    return create_app()
