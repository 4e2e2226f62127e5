"""Every Python block in README.md and docs/*.md runs, as a reader would run it.

A block runs as a script, in a fresh namespace, with ``HOOKAPI_URL`` pointing at an emulator
served on a loopback socket: the emulator stands in for the service, and a block that posts
must really post. Two markers, on the line just above a block, change that:

- ``<!-- fragment -->``: the block is a piece of a larger program (it uses names defined
  elsewhere); it is only compiled, top-level ``await`` allowed;
- ``<!-- pytest -->``: the block is a test module; pytest runs it and every test must pass.

Code the docs show whole from ``docs/examples`` (``literalinclude``) is collected by pytest as
it is.
"""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookapi.emulator import Emulator, Hook

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(?:^<!-- (?P<mark>[a-z]+) -->\n)?^```python\n(?P<code>.*?)^```$", re.M | re.S)
MARKS = {None, "fragment", "pytest"}


@dataclass(frozen=True, slots=True)
class Block:
    page: str
    line: int
    mark: str | None
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            name = page.relative_to(ROOT).as_posix()
            found.append(Block(name, line, match["mark"], match["code"]))
    return found


BLOCKS = blocks()


def test_the_blocks_are_found_and_marked_with_known_marks() -> None:
    ids = {b.id.split(":")[0] for b in BLOCKS}
    assert {"README.md", "docs/tutorial.md", "docs/howto.md", "docs/testing.md"} <= ids
    assert {b.mark for b in BLOCKS} <= MARKS
    # Runnable blocks are the rule: fragments stay a minority.
    assert sum(b.mark is None for b in BLOCKS) > 2 * sum(b.mark == "fragment" for b in BLOCKS)


def test_a_marker_only_counts_right_above_a_block() -> None:
    text = "<!-- fragment -->\n```python\nx\n```\n\n```python\ny\n```\n"
    assert [(m["mark"], m["code"]) for m in _BLOCK.finditer(text)] == [
        ("fragment", "x\n"),
        (None, "y\n"),
    ]


@pytest.fixture
def service(served_hook_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """HOOKAPI_URL set to a served emulator; the working directory a scratch one."""
    monkeypatch.setenv("HOOKAPI_URL", served_hook_url)
    monkeypatch.setenv("LOCAL_HOOK_SECRET", "0" * 64)
    monkeypatch.chdir(tmp_path)
    return served_hook_url


def _loggers() -> list[logging.Logger]:
    named = logging.Logger.manager.loggerDict.values()
    return [logging.getLogger(), *(log for log in named if isinstance(log, logging.Logger))]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Undo what a block does to logging (``basicConfig``, ``dictConfig``, handlers added).

    Every logger gets its handlers, level and flags back, and the handlers a block added and
    left open (a ``HookHandler``, say, which delivers until closed) are closed.
    """
    saved = {log: (log.handlers[:], log.level, log.propagate, log.disabled) for log in _loggers()}
    yield
    added: dict[logging.Handler, None] = {}
    for log in _loggers():
        before = saved.get(log)
        added.update((h, None) for h in log.handlers if before is None or h not in before[0])
        if before is None:
            log.handlers.clear()
            continue
        log.handlers[:], level, log.propagate, log.disabled = before
        log.setLevel(level)
    for handler in added:
        handler.close()


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark is None], ids=lambda b: b.id)
def test_the_block_runs(block: Block, service: str, hook_emulator: Emulator, hook: Hook) -> None:
    code = compile(block.code, block.id, "exec")
    before = len(hook_emulator.messages(hook))
    exec(code, {"__name__": "__main__"})
    posts = "post_message" in block.code and "from_env" in block.code
    if posts:  # a block that posts through HOOKAPI_URL did reach the service
        assert len(hook_emulator.messages(hook)) > before


def unused_functions(code: str) -> list[str]:
    """The functions a block defines at its top level and never names again (never runs).

    A decorated function counts as used: its decorator registers it (a route, a fixture).
    """
    tree = ast.parse(code)
    defined = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.decorator_list
    ]
    named = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    named |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    return [name for name in defined if name not in named]


def test_a_block_that_defines_main_without_running_it_is_caught() -> None:
    assert unused_functions("async def main() -> None:\n    await go()\n") == ["main"]
    assert unused_functions("async def main() -> None: ...\nanyio.run(main)\n") == []
    assert unused_functions("@app.get('/')\nasync def home() -> None: ...\n") == []


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark is None], ids=lambda b: b.id)
def test_the_block_runs_to_the_end(block: Block) -> None:
    # Running a block that only defines `main` proves nothing of `main`: a block that runs
    # must run what it defines (or be marked a fragment on purpose).
    assert unused_functions(block.code) == [], "defined, never run: mark it a fragment or run it"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark == "fragment"], ids=lambda b: b.id)
def test_the_fragment_compiles(block: Block) -> None:
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark == "pytest"], ids=lambda b: b.id)
def test_the_test_module_passes(block: Block, tmp_path: Path) -> None:
    module = tmp_path / "test_from_docs.py"
    module.write_text(block.code)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"),
            *("-o", "asyncio_default_fixture_loop_scope=function", module),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
    assert "skipped" not in done.stdout


def test_the_readmes_first_command_installs_from_the_checkout() -> None:
    # `nox -s install` runs it on a fresh copy; this keeps it the first thing a reader sees.
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```console\n\$ (.*?)\n", readme)
    assert first is not None
    # With nothing but the system's python3: no `python`, no activation, no pip outside a venv.
    venv = "python3 -m venv .venv"
    assert (
        first[1] == f'{venv} && .venv/bin/python -m pip install ".[cli]" && .venv/bin/hookapi demo'
    )
    assert 'Once hookapi is published on PyPI, `python -m pip install "hookapi[cli]"`' in readme


def test_the_docs_say_what_the_cli_extra_adds() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cli = extras["optional-dependencies"]["cli"]
    pages = [ROOT / "README.md", ROOT / "docs/tutorial.md", ROOT / "docs/cli.md"]
    for page in pages:
        text = " ".join(page.read_text().split())
        assert ("adds nothing today" in text) == (cli == []), page.name
        assert "adds what the command line needs" not in text, page.name
