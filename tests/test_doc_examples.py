"""The examples in the docstrings run and say what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from hookapi import _client, _ratelimit, _retry, _secrets


@pytest.mark.parametrize(
    "module", [_secrets, _ratelimit, _retry, _client], ids=lambda m: m.__name__
)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
