"""A FastAPI service that posts through an outbox: handlers ``put`` and return at once.

The outbox lives in the app's lifespan, next to the client: it starts with the app, and on
shutdown it drains for up to ``drain_timeout`` seconds; what is left stays in the SQLite file
and goes out first at the next start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request

import hookapi


def create_app(
    make_client: Callable[[], hookapi.AsyncHookClient] = hookapi.AsyncHookClient.from_env,
    *,
    store: hookapi.OutboxStore | str = "service-outbox.sqlite",
) -> FastAPI:
    """The service; ``make_client`` builds its client (tests pass one for the emulator)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with (
            make_client() as client,
            hookapi.Outbox(client, store=store, drain_timeout=10.0) as outbox,
        ):
            app.state.outbox = outbox
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/notify", status_code=202)
    async def notify(text: str, request: Request) -> dict[str, object]:
        outbox: hookapi.Outbox = request.app.state.outbox
        try:
            receipt = await outbox.put(text)
        except hookapi.InvalidInputError as exc:
            raise HTTPException(422, str(exc)) from None
        except hookapi.OutboxClosedError as exc:
            raise HTTPException(503, "Shutting down.") from exc
        return {"id": receipt.id, "state": receipt.state.value}

    @app.get("/outbox")
    async def status(request: Request) -> dict[str, object]:
        outbox: hookapi.Outbox = request.app.state.outbox
        error = outbox.pause_error
        return {
            "pending": len(outbox.pending),
            "dead_letters": len(outbox.failed()),
            "paused": outbox.paused,
            "pause_reason": None if error is None else str(error),
        }

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app())
