"""`GET /jobs/{job_id}`: the status of any piece of background work."""

import uuid

from fastapi import APIRouter, HTTPException, status

from app.core.security import ClientScope
from app.jobs.schemas import JobRead
from app.jobs.service import get_job_store

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[ClientScope])


@router.get("/{job_id}", response_model=JobRead, responses={404: {"description": "Unknown job"}})
def read_job(job_id: uuid.UUID) -> JobRead:
    job = get_job_store().get(job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"Job {job_id} not found")
    return job
