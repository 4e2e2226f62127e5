"""The examples in the emulator's and the testing kit's docstrings run, and say what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import hookapi.emulator
import hookapi.testing
from hookapi.emulator import _app, _emulator, _models


@pytest.mark.parametrize("module", [hookapi.emulator, _emulator, _models, _app, hookapi.testing])
def test_docstring_examples_run(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, raise_on_error=False)
    assert result.failed == 0
    assert result.attempted > 0 or module is _models


@pytest.mark.parametrize("module", [hookapi.emulator, hookapi.testing])
def test_the_public_names_are_importable_and_documented(module: ModuleType) -> None:
    names = module.__all__  # kept sorted by ruff (RUF022)
    assert len(set(names)) == len(names)
    for name in names:
        value = getattr(module, name)
        if callable(value) and not name.isupper() and name not in {"FaultKind", "Window"}:
            assert (value.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"
