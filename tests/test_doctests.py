"""The examples in the public docstrings run and print what they show."""

from __future__ import annotations

import doctest

import pytest

from fastconv import _api, _backend


@pytest.mark.parametrize("module", [_api, _backend], ids=lambda module: module.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module.__name__} failed"
