"""docs/logging.md's recipes run as a reader would run them, and their records reach the hook.

``tests/test_docs_run.py`` runs every block; here each logging recipe is also used the way
its framework would use it (Django hands ``LOGGING`` to ``dictConfig``, uvicorn's ``Config``
configures logging, a FastAPI app runs its lifespan), and the record must arrive.
"""

from __future__ import annotations

import logging
import logging.config
import math
import re
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import structlog
from asgi_lifespan import LifespanManager

from hookapi.emulator import Emulator, Hook
from hookapi.logging import HookHandler
from hookapi.testing import make_client

from .test_docs_run import BLOCKS, restored_logging

__all__ = ["restored_logging"]  # the fixture, used here by name

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("restored_logging")]


def recipe(marker: str) -> str:
    """The one Python block of docs/logging.md that contains ``marker``."""
    (code,) = [b.code for b in BLOCKS if b.page == "docs/logging.md" and marker in b.code]
    return code


def run(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, "docs/logging.md", "exec"), namespace)
    return namespace


def hook_handlers(*names: str) -> list[HookHandler]:
    found: dict[HookHandler, None] = {}
    for name in names:
        log = logging.getLogger(name)
        found.update((h, None) for h in log.handlers if isinstance(h, HookHandler))
    return list(found)


def texts(emulator: Emulator, hook: Hook) -> list[str]:
    return [message.text for message in emulator.messages(hook)]


@pytest.fixture(autouse=True)
def service(served_hook_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HOOKAPI_URL", served_hook_url)
    return served_hook_url


def test_the_first_example_posts_and_closes(hook_emulator: Emulator, hook: Hook) -> None:
    run(recipe("handler = HookHandler()  # the hook URL from HOOKAPI_URL"))
    assert texts(hook_emulator, hook) == ["Payment provider unreachable"]


def test_the_dict_config_recipe_posts_with_its_formatter(
    hook_emulator: Emulator, hook: Hook
) -> None:
    run(recipe("logging.config.dictConfig(LOGGING)"))
    assert texts(hook_emulator, hook) == ["ERROR jobs.nightly: The nightly export failed"]


def test_the_django_recipe_configures_logging_as_django_does(
    hook_emulator: Emulator, hook: Hook
) -> None:
    settings = run(recipe('"django.request"'))
    # django.utils.log.configure_logging() does this with settings.LOGGING.
    logging.config.dictConfig(settings["LOGGING"])
    logging.getLogger("django.request").error("Internal Server Error: %s", "/checkout/")
    logging.getLogger("myproject.orders").info("an order")  # below ERROR: not sent
    logging.getLogger("myproject.orders").error("an order failed")
    (handler,) = hook_handlers("django.request", "myproject")
    handler.close()
    assert texts(hook_emulator, hook) == ["Internal Server Error: /checkout/", "an order failed"]


def test_the_uvicorn_recipe_sends_uvicorn_errors(hook_emulator: Emulator, hook: Hook) -> None:
    namespace = run(recipe("uvicorn.Config"))
    assert namespace["server"].config.log_config is namespace["LOG_CONFIG"]
    logging.getLogger("uvicorn.error").info("Started server process")  # below ERROR
    logging.getLogger("uvicorn.error").error("Exception in ASGI application")
    (handler,) = hook_handlers("uvicorn.error")
    handler.close()
    assert texts(hook_emulator, hook) == ["ERROR uvicorn.error: Exception in ASGI application"]


def test_the_fastapi_recipe_delivers_on_the_apps_loop(hook_emulator: Emulator, hook: Hook) -> None:
    namespace = run(recipe("handler.delivering()"))
    app, handler = namespace["app"], namespace["handler"]
    # Before startup (an import-time error, say): it waits for the lifespan.
    logging.getLogger("uvicorn.error").error("a setting is missing")

    async def serve() -> None:
        async with LifespanManager(app):
            logging.getLogger("myapp.checkout").error("checkout failed for order A42")

    anyio.run(serve)
    # Delivered by a task of the app's loop: the handler started no thread of its own.
    assert not any(t.name == "hookapi-log-handler" for t in threading.enumerate())
    handler.close()
    assert texts(hook_emulator, hook) == [
        "a setting is missing",
        "checkout failed for order A42",
    ]


@pytest.fixture
def structlog_reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("structlog_reset")
def test_the_structlog_recipe_sends_the_rendered_event(hook_emulator: Emulator, hook: Hook) -> None:
    run(recipe("structlog.configure("))
    (text,) = texts(hook_emulator, hook)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT[\d:.]+Z \[error\s*\] payment failed\s+order=A42 provider=acme", text
    ), text


@pytest.mark.usefixtures("structlog_reset")
def test_a_structlog_flood_is_summed_up_by_event_name(
    anyio_backend: tuple[str, dict[str, Any]],
) -> None:
    """Events that differ only in their fields are one group in a digest's summary."""
    emulator = Emulator(per_hour=60, per_day=1000)
    hook = emulator.create_hook()
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    handler = HookHandler(make_client(emulator, hook), drain_timeout=math.inf)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.dev.ConsoleRenderer(colors=False))
    )
    log = logging.getLogger("app.structlog.billing")
    log.propagate = False
    log.addHandler(handler)

    async def flood() -> None:
        async with handler.delivering():
            for i in range(200):
                structlog.get_logger("app.structlog.billing").error("payment failed", order=i)
                await anyio.sleep(0.05)

    backend, options = anyio_backend
    anyio.run(flood, backend=backend, backend_options=options)
    log.removeHandler(handler)
    posted = "\n".join(texts(emulator, hook))
    summaries = re.findall(
        r"^\.\.\. and (\d+) more ERROR records .*?, (\d+) of them like: .*payment failed",
        posted,
        re.MULTILINE,
    )
    assert summaries, posted  # the flood was summed up ...
    assert all(more == alike for more, alike in summaries)  # ... as one shape, whatever the order
    shown = len(re.findall(r"^\[error\s*\] payment failed\s+order=\d+$", posted, re.MULTILINE))
    assert shown + sum(int(more) for more, _ in summaries) == 200
