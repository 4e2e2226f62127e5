"""Every check the project runs, one session each; `nox` runs all but the benchmarks."""

from __future__ import annotations

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
