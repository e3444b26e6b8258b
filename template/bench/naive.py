"""The naive reference: a plain FastAPI app doing what the FastAPI docs show, nothing durable.

`python -m bench` drives it in the same run as the service, so the price of durability is
read against the pattern it replaces, not against a figure from another day.
"""

from fastapi import BackgroundTasks, FastAPI, status

app = FastAPI()


async def noop() -> None:
    """Does nothing: what running work after the response costs, with nothing recorded."""


@app.post("/bare")
async def bare() -> dict[str, bool]:
    return {"ok": True}


@app.post("/enqueue", status_code=status.HTTP_202_ACCEPTED)
async def enqueue(background_tasks: BackgroundTasks) -> dict[str, bool]:
    background_tasks.add_task(noop)
    return {"ok": True}
