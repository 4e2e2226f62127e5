"""Every check the project runs, one session each; `nox` runs all but the benchmarks."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typing", "tests", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHON = "3.11"


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


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    install_group(session, "tests")
    session.install("-e", ".[emulator,cli]")
    session.run("coverage", "erase")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        env={"COVERAGE_PROCESS_START": os.path.abspath("pyproject.toml")},
    )
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    install_group(session, "docs")
    session.install("-e", ".[emulator,cli]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )
