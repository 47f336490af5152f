"""Every docstring example in the project runs, so the examples cannot drift from the code."""

import doctest
import importlib
import pkgutil

import pytest

import pipelines
import reference_data

MODULES = sorted(
    name
    for package in (pipelines, reference_data)
    for _, name, _ in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0
