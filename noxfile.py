"""Every check the project runs, one session each; `nox` runs all but the benchmarks."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import nox

# uv makes and fills an environment in seconds where venv and pip take a minute; nox falls
# back to venv where uv is missing. Environments are reused: a second run installs only what
# changed.
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
# CI must run every interpreter we claim; locally a missing one is skipped with nox's message.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.sessions = ["checks", "tests", "install"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"
#: Every Python that pyproject's classifiers claim; the tests run on each.
PYTHONS = ["3.11", "3.12", "3.13"]


def _runs(command: str) -> bool:
    try:
        subprocess.run([command, "-c", ""], check=True, capture_output=True)  # noqa: S603
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def _find_pythons() -> None:
    """Put pyenv's installed interpreters on PATH when their shims are not active.

    pyenv installs several versions side by side but its shims run only the active ones, so
    ``python3.12`` may exist and still fail; nox finds interpreters on PATH only.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    extra = []
    for version in PYTHONS:
        if _runs(f"python{version}"):
            continue
        found = sorted(root.glob(f"{version}.*/bin/python{version}"))
        if found:
            extra.append(str(found[-1].parent))
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


_find_pythons()


def install_group(session: nox.Session, *groups: str) -> None:
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups))


def run_lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


def run_typing(session: nox.Session) -> None:
    session.run("mypy", "--strict")


def run_docs(session: nox.Session) -> None:
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(python=PYTHON)
def checks(session: nox.Session) -> None:
    """Lint, typing and the docs build in one environment: none needs to be alone.

    ``nox -s lint``, ``nox -s typing`` and ``nox -s docs`` run one of them (each in an
    environment of its own).
    """
    install_group(session, "lint", "typing", "docs")
    session.install("-e", ".[emulator,cli,fastapi]", "nox")
    run_lint(session)
    run_typing(session)
    run_docs(session)


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    install_group(session, "lint")
    run_lint(session)


@nox.session(python=PYTHON, default=False)
def typing(session: nox.Session) -> None:
    install_group(session, "typing")
    session.install("-e", ".[emulator,cli,fastapi]", "nox")
    run_typing(session)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The suite under coverage; ``nox -s tests -- -k throttle`` runs a subset.

    The coverage floor is for the whole suite: a run given pytest arguments (a subset) shows
    its coverage without failing on it.
    """
    install_group(session, "tests")
    session.install("-e", ".[emulator,cli,fastapi]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", *(["--fail-under=0"] if session.posargs else []))


@nox.session(python=PYTHON, default=False)
def docs(session: nox.Session) -> None:
    install_group(session, "docs")
    session.install("-e", ".[emulator,cli,fastapi]")
    run_docs(session)


#: The quickest demo that still goes through the whole client, a served emulator and a burst
#: from several tasks (the full one, with faults and quota waits, takes about 11 s).
QUICK_DEMO = ("--messages", "10", "--tasks", "5", "--latency", "0", "--no-faults")
#: The pages whose console lines the install session runs.
INSTALL_PAGES = ("README.md", "docs/tutorial.md")
#: The Python a bare Debian machine has: the system's, which refuses ``pip install`` (PEP 668)
#: and has no ``python`` alias. HOOKAPI_SYSTEM_PYTHON names another.
SYSTEM_PYTHON = os.environ.get("HOOKAPI_SYSTEM_PYTHON", "/usr/bin/python3")
#: What the install session leaves out of its copy of the checkout.
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "_build", "__pycache__", "*.egg-info", "stress-logs"
)


def documented_commands() -> list[list[str]]:
    """Every command a new user types from the console blocks of INSTALL_PAGES, in order.

    ``$ a && b  # note`` gives ``a`` and ``b``: making the ``.venv``, installing into it, and
    ``hookapi demo``. Running ``nox`` itself (the test command: this session is part of it)
    is left out, and so is a command seen before.
    """
    commands: list[list[str]] = []
    for page in INSTALL_PAGES:
        for block in re.findall(r"```console\n(.*?)```", Path(page).read_text(), re.S):
            for line in block.splitlines():
                if not line.startswith("$ "):
                    continue
                for part in line[2:].split("#", 1)[0].split("&&"):
                    words = shlex.split(part)
                    program = Path(words[0]).name if words else ""
                    wanted = (
                        words[:3] == ["python3", "-m", "venv"]
                        or (program == "python" and words[1:4] == ["-m", "pip", "install"])
                        or (program == "hookapi" and words[1:2] == ["demo"])
                    )
                    if wanted and words not in commands:
                        commands.append(words)
    return commands


@nox.session(venv_backend="none")
def install(session: nox.Session) -> None:
    """The README's and the tutorial's commands as a new user types them, on a fresh copy.

    With the system's ``python3`` (Debian's refuses ``pip install`` outside a venv and has no
    ``python``): it makes ``.venv`` in a copy of the checkout, installs into it as the pages
    say, runs ``hookapi demo`` with its quickest options, and imports each extra's module.
    """
    commands = documented_commands()
    if not any(Path(words[0]).name == "hookapi" for words in commands):
        session.error("README.md lost its `hookapi demo` line.")
    python3 = SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else shutil.which("python3")
    if python3 is None:
        session.error("No python3 to install with: set HOOKAPI_SYSTEM_PYTHON.")
    copy = Path(session.create_tmp()) / "checkout"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(Path.cwd(), copy, ignore=_NOT_COPIED)
    with session.chdir(copy):
        for words in commands:
            program = python3 if words[0] == "python3" else words[0]
            quick = QUICK_DEMO if Path(words[0]).name == "hookapi" else ()
            session.run(program, *words[1:], *quick, external=True)
        session.run(
            ".venv/bin/python",
            "-c",
            "import hookapi.fastapi, hookapi.cli, hookapi.emulator",
            external=True,
        )


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks against peers and the bare transport on local nginx (not run by default).

    Pass ``-- --quick`` for a short run; ``-- --help`` lists the options.
    """
    import os  # noqa: PLC0415  (only this session needs these)
    import shutil  # noqa: PLC0415

    install_group(session, "bench")
    session.install("-e", ".[emulator]")
    if shutil.which("nginx") is None and not os.access("/usr/sbin/nginx", os.X_OK):
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            session.error("The benchmarks need nginx: install it (Debian: apt-get install nginx).")
        apt = ("apt-get", "-q", "-o", "DPkg::Lock::Timeout=300")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        session.run(*apt, "update", external=True, env=env)
        session.run(*apt, "install", "-y", "nginx", external=True, env=env)
    session.run("python", "benchmarks/run.py", *session.posargs)
    if "--help" in session.posargs or "-h" in session.posargs:
        return
    # OpenTelemetry's cost per post (absent, installed without a provider, the SDK recording)
    # and what logging.error costs with a HookHandler attached: docs/benchmarks.md's tables.
    session.install("-e", ".[emulator,otel]", "opentelemetry-sdk>=1.25")
    quick = ["--quick"] if "--quick" in session.posargs else []
    session.run("python", "benchmarks/otel.py", *quick, "--out", "benchmarks/results/otel.md")
    session.run("python", "benchmarks/log_handler.py", *(["--repeats", "1"] if quick else []))
