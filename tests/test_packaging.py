"""The project's metadata says what the checks prove: the Pythons it claims are the ones tested."""

from __future__ import annotations

import ast
import fnmatch
import sys
import tomllib
from pathlib import Path

from hookapi.outbox._redis._scripts import SCRIPTS as OUTBOX_SCRIPTS

ROOT = Path(__file__).parent.parent


def _tested_pythons() -> list[str]:
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "PYTHONS" for t in targets):
                assert node.value is not None
                value = ast.literal_eval(node.value)
                assert isinstance(value, list)
                return [str(v) for v in value]
    raise AssertionError("noxfile.py defines no PYTHONS")


def test_the_classifiers_list_exactly_the_tested_pythons() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: 3."
    claimed = sorted(
        c.removeprefix("Programming Language :: Python :: ")
        for c in project["classifiers"]
        if c.startswith(prefix)
    )
    assert claimed == sorted(_tested_pythons())
    lowest = min(_tested_pythons(), key=lambda v: tuple(map(int, v.split("."))))
    assert project["requires-python"] == f">={lowest}"


def _distribution(requirement: str) -> str:
    name = requirement.split(";", maxsplit=1)[0]
    for stop in "<>=!~[ ":
        name = name.split(stop)[0]
    return name.strip().lower().replace("_", "-")


def test_the_fastapi_extra_installs_what_its_testing_recipe_imports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    provided = {_distribution(r) for r in project["dependencies"]}
    provided |= {_distribution(r) for r in project["optional-dependencies"]["fastapi"]}
    # Starlette's TestClient runs on httpx2; on httpx alone it warns StarletteDeprecationWarning.
    assert "httpx2" in provided
    recipe = ROOT / "docs" / "examples"
    imported: set[str] = set()
    for name in ("fastapi_app.py", "test_fastapi_app.py"):
        for node in ast.walk(ast.parse((recipe / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
    local = {"__future__", "hookapi", "fastapi_app", "pytest", "pydantic"}  # pydantic: fastapi's
    third_party = {m for m in imported - local if m not in sys.stdlib_module_names}
    assert {m.replace("_", "-") for m in third_party} <= provided


def test_the_wheel_ships_the_redis_scripts() -> None:
    """The Lua scripts are package data read with importlib.resources: the wheel must hold them.

    Hatch puts every file of the listed packages in the wheel that no exclude or .gitignore
    pattern drops; this holds the configuration to that.
    """
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    wheel = build["targets"]["wheel"]
    assert wheel["packages"] == ["hookapi"]
    assert "only-include" not in wheel
    quota = sorted(p.name for p in (ROOT / "hookapi" / "_redis").glob("*.lua"))
    assert quota == ["_ends.lua", "_prelude.lua", "budget.lua", "end.lua", "reserve.lua"]
    # The shared outbox's scripts (RedisStore): every one its module loads is a file here.
    outbox = sorted(p.name for p in (ROOT / "hookapi" / "outbox" / "_redis").glob("*.lua"))
    assert outbox == sorted(["_keys.lua", *(f"{name}.lua" for name in OUTBOX_SCRIPTS)])
    patterns = [*build.get("exclude", []), *wheel.get("exclude", [])]
    patterns += (ROOT / ".gitignore").read_text().split()
    for folder, names in (("hookapi/_redis", quota), ("hookapi/outbox/_redis", outbox)):
        for name in names:
            assert not any(
                fnmatch.fnmatch(name, p) or fnmatch.fnmatch(f"{folder}/{name}", p) for p in patterns
            ), name
