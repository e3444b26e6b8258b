"""`POST /users` registers a user and schedules their welcome email; `GET /users/{id}` reads one."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from fastapi.concurrency import run_in_threadpool

from app.core.rate_limit import RateLimit
from app.core.security import ClientScope
from app.features.email import service
from app.features.email.schemas import UserCreate, UserRead
from app.features.email.tasks import send_welcome
from app.tasks import TaskQueueDep

router = APIRouter(prefix="/users", tags=["users"], dependencies=[ClientScope])

# Ids fit a 32-bit INTEGER column on every database; larger values are refused as 422.
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "Email already registered"}},
    dependencies=[RateLimit],  # each sign-up sends an email to an address the caller chose
)
async def create_user(payload: UserCreate, queue: TaskQueueDep, response: Response) -> UserRead:
    try:
        user, welcome_job = await run_in_threadpool(
            service.create_user, payload.email, payload.name, send_welcome
        )
    except service.EmailTaken:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"A user with email {payload.email} already exists"
        ) from None
    # The user and their welcome job committed together, so a refused duplicate schedules
    # nothing, and a process dying right here leaves the job `queued` for recovery (the
    # lease sweep, or a Celery worker's sweep), never a user without one.
    await queue.dispatch(welcome_job)
    response.headers["Location"] = f"/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/{user_id}", responses={404: {"description": "Unknown user"}})
def read_user(user_id: UserId) -> UserRead:
    user = service.get_user(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"User {user_id} not found")
    return UserRead.model_validate(user)
