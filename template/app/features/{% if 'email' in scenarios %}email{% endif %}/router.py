"""`POST /users` registers a user and schedules their welcome email; `GET /users/{id}` reads one."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from fastapi.concurrency import run_in_threadpool

from app.core.rate_limit import RateLimit
from app.core.security import ClientScope
from app.features.email import service
from app.features.email.schemas import UserCreate, UserRead
from app.features.email.tasks import send_welcome
from app.tasks import TaskQueueDep, enqueue_or_undo

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
        user = await run_in_threadpool(service.create_user, payload.email, payload.name)
    except service.EmailTaken:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=f"A user with email {payload.email} already exists"
        ) from None
    # Enqueued only once the user row is committed, so a refused duplicate schedules
    # nothing. Should the process die right here, the user exists without a welcome job
    # (`welcome_email_job_id` stays null, which is how an operator finds them).
    undo = partial(service.delete_user, user.id)  # else the retry of a 503 meets a 409
    job_id = await enqueue_or_undo(queue, send_welcome, undo, user_id=user.id)
    await run_in_threadpool(service.set_welcome_email_job, user.id, job_id)
    user.welcome_email_job_id = job_id
    response.headers["Location"] = f"/users/{user.id}"
    return UserRead.model_validate(user)


@router.get("/{user_id}", responses={404: {"description": "Unknown user"}})
def read_user(user_id: UserId) -> UserRead:
    user = service.get_user(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"User {user_id} not found")
    return UserRead.model_validate(user)
