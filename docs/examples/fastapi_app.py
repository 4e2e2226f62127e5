"""A FastAPI app that posts to a Desktop through one hook (the FastAPI how-to's app)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from pydantic import BaseModel

from hookapi.fastapi import AsyncHookClientDep, add_exception_handlers, hook_lifespan


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
    # The app's own start-up and shut-down; hookapi's client is opened around it.
    yield {"service": "deployer"}


app = FastAPI(lifespan=hook_lifespan(lifespan, timeout=5.0))
add_exception_handlers(app)


class Notice(BaseModel):
    text: str


@app.post("/notify")
async def notify(notice: Notice, hook: AsyncHookClientDep, request: Request) -> dict[str, object]:
    result = await hook.post_message(
        notice.text, deadline=5.0
    )  # errors: see add_exception_handlers
    return {"attempts": result.attempts, "by": request.state.service}
