"""The public surface: what ``import hookapi`` offers, and that it is typed and documented."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from importlib.resources import files

import pytest

import hookapi


def test_all_is_sorted_and_complete() -> None:
    assert hookapi.__all__ == sorted(hookapi.__all__)
    public = {n for n in vars(hookapi) if n.isidentifier() and not n.startswith("_")}
    consumers = {"cli", "emulator", "fastapi", "logging", "outbox", "testing"}
    assert public - {"annotations"} <= set(hookapi.__all__) | consumers
    for name in hookapi.__all__:
        assert hasattr(hookapi, name), name


@pytest.mark.parametrize("name", [n for n in hookapi.__all__ if n != "__version__"])
def test_every_public_name_has_a_docstring(name: str) -> None:
    obj = getattr(hookapi, name)
    assert inspect.getdoc(obj), name
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if not attr.startswith("_") and callable(member):
                assert inspect.getdoc(member), f"{name}.{attr}"


@pytest.mark.parametrize(
    "cls",
    [
        hookapi.RateLimit,
        hookapi.RetryPolicy,
        hookapi.PostResult,
        hookapi.DeadLetter,
        hookapi.StoredMessage,
        hookapi.Coalesce,
    ],
)
def test_value_objects_are_frozen_and_keyword_only(cls: type) -> None:
    params = dataclasses.fields(cls)
    assert all(field.kw_only for field in params)
    instance = cls(**{f.name: 1 for f in params if f.default is dataclasses.MISSING})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(instance, params[0].name, 2)
    assert not hasattr(instance, "__dict__")  # slots


def test_the_package_is_typed() -> None:
    assert files("hookapi").joinpath("py.typed").is_file()


def test_import_pulls_in_no_test_or_server_machinery() -> None:
    code = (
        "import sys, hookapi; "
        "bad = [m for m in ('pytest', 'uvicorn', 'trio', 'respx', 'redis') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_is_semver() -> None:
    major, minor, patch = hookapi.__version__.split(".")
    assert (major, minor.isdigit(), patch.isdigit()) == ("0", True, True)


def test_client_options_are_the_constructors_options() -> None:
    # ClientOptions types from_url/from_env/HookClient: a new constructor option must be in it.
    params = inspect.signature(hookapi.AsyncHookClient).parameters
    assert set(hookapi.ClientOptions.__annotations__) == set(params) - {
        "hook_id",
        "secret",
        "base_url",
    }
    assert hookapi.ClientOptions.__required_keys__ == frozenset()


# Every import path the docs name: the layout behind them may move, these may not.
DOCUMENTED_PATHS = [
    ("hookapi", "AsyncHookClient"),
    ("hookapi", "HookClient"),
    ("hookapi", "ClientOptions"),
    ("hookapi", "RetryPolicy"),
    ("hookapi", "RateLimit"),
    ("hookapi", "Secret"),
    ("hookapi", "Outbox"),
    ("hookapi", "SQLiteStore"),
    ("hookapi", "RedisStore"),
    ("hookapi", "Coalesce"),
    ("hookapi.logging", "HookHandler"),
    ("hookapi.emulator", "Emulator"),
    ("hookapi.emulator", "Server"),
    ("hookapi.emulator", "Hook"),
    ("hookapi.emulator", "Fault"),
    ("hookapi.testing", "assert_posted"),
    ("hookapi.testing", "make_client"),
    ("hookapi.testing", "scripted_faults"),
    ("hookapi.testing", "VirtualTimeEventLoop"),
]


@pytest.mark.parametrize(("module", "name"), DOCUMENTED_PATHS)
def test_documented_import_paths_hold(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


def test_the_console_script_and_the_pytest_plugin_are_registered() -> None:
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "hookapi"]
    assert callable(script.load())
    (plugin,) = [e for e in entry_points(group="pytest11") if e.name == "hookapi"]
    assert plugin.value == "hookapi.testing"
    assert callable(plugin.load().pytest_configure)


def test_python_dash_m_runs_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hookapi", "--version"], capture_output=True, text=True, check=True
    )
    assert hookapi.__version__ in out.stdout


def test_a_first_post_on_asyncio_loads_only_what_it_uses() -> None:
    # Cold start: `import hookapi` and one post through the default pool on asyncio leave out
    # httpcore (and trio), anyio's backend (the first post takes the asyncio fast path too),
    # OpenTelemetry with no provider set, the sync client's portal, the outbox and the Redis
    # modules; each still loads when used.
    code = textwrap.dedent(
        """
        import asyncio, sys
        import hookapi

        ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok"

        async def answer(reader, writer):
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(ANSWER)
            await writer.drain()
            writer.close()

        async def main():
            server = await asyncio.start_server(answer, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            async with hookapi.AsyncHookClient(
                hook_id="h", secret="s" * 16, base_url=f"http://127.0.0.1:{port}/hooks"
            ) as client:
                result = await client.post_message("hi")
            server.close()
            return result.status_code

        print(asyncio.run(main()))
        heavy = ("httpcore", "trio", "opentelemetry.trace", "anyio.from_thread",
                 "anyio._backends._asyncio",
                 "hookapi.outbox", "hookapi._redis", "hookapi._http._core")
        print([name for name in heavy if name in sys.modules])
        from hookapi import Outbox, RedisQuota, RedisStore, ConnectionPool
        print(sorted(name for name in heavy if name in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, before, after = out.stdout.splitlines()
    assert (status, before) == ("200", "[]")
    assert "hookapi.outbox" in after
    assert "hookapi._redis" in after
