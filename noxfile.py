"""Every check the project runs, one session each; `nox` runs all but the benchmarks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
# CI must run every interpreter we claim; locally a missing one is skipped with nox's message.
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.sessions = ["lint", "typing", "tests", "docs"]

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
    session.install("-e", ".[emulator,cli]", "nox")
    session.run("mypy", "--strict")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    install_group(session, "tests")
    session.install("-e", ".[emulator,cli]")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    install_group(session, "docs")
    session.install("-e", ".[emulator,cli]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
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
