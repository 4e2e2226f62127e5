"""The examples in the docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hookapi


def _modules() -> list[str]:
    names = [hookapi.__name__]
    for info in pkgutil.walk_packages(hookapi.__path__, prefix="hookapi."):
        names.append(info.name)
    return sorted(names)


def _has_examples(name: str) -> bool:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    return any(test.examples for test in finder.find(module, name))


_WITH_EXAMPLES = [name for name in _modules() if _has_examples(name)]


def test_the_modules_with_examples_are_found() -> None:
    # Guards the discovery itself: these modules are known to carry examples.
    for name in ["hookapi._client", "hookapi._retry", "hookapi._secrets", "hookapi.emulator"]:
        assert name in _WITH_EXAMPLES


@pytest.mark.parametrize("name", _WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
