"""Every check the project runs, one session each; `nox` runs all but the benchmarks."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
# CI must run every interpreter we claim; locally a missing one is skipped with nox's message.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.sessions = ["lint", "typing", "tests", "docs", "install"]

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


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    install_group(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typing(session: nox.Session) -> None:
    install_group(session, "typing")
    session.install("-e", ".[emulator,cli,fastapi]", "nox")
    session.run("mypy", "--strict")


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


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    install_group(session, "docs")
    session.install("-e", ".[emulator,cli,fastapi]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


#: The quickest demo that still goes through the whole client, a served emulator and a burst
#: from several tasks (the full one, with faults and quota waits, takes about 11 s).
QUICK_DEMO = ("--messages", "10", "--tasks", "5", "--latency", "0", "--no-faults")
#: The pages whose ``$ python -m pip install ...`` lines the install session runs.
INSTALL_PAGES = ("README.md", "docs/tutorial.md")


def documented_commands() -> list[list[str]]:
    """Every install and ``hookapi demo`` command in the console blocks of INSTALL_PAGES.

    ``$ a && b  # note`` gives ``a`` and ``b``; installing nox (the test command) is left out,
    and so is a command seen before.
    """
    commands: list[list[str]] = []
    for page in INSTALL_PAGES:
        for block in re.findall(r"```console\n(.*?)```", Path(page).read_text(), re.S):
            for line in block.splitlines():
                if not line.startswith("$ "):
                    continue
                for part in line[2:].split("#", 1)[0].split("&&"):
                    words = shlex.split(part)
                    install = words[:4] == ["python", "-m", "pip", "install"]
                    wanted = (install and "nox" not in words) or words[:2] == ["hookapi", "demo"]
                    if wanted and words not in commands:
                        commands.append(words)
    return commands


@nox.session(python=PYTHON, reuse_venv=False)
def install(session: nox.Session) -> None:
    """The README's and the tutorial's install lines, from the checkout, in a fresh venv.

    Then ``hookapi demo`` with its quickest options, and an import of each extra's module.
    """
    commands = documented_commands()
    if not any(words[:2] == ["hookapi", "demo"] for words in commands):
        session.error("README.md lost its `hookapi demo` line.")
    for words in commands:
        quick = QUICK_DEMO if words[:2] == ["hookapi", "demo"] else ()
        session.run(*words, *quick)
    session.run("python", "-c", "import hookapi.fastapi, hookapi.cli, hookapi.emulator")


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
