"""The examples in the public API's docstrings run, and say what they print."""
import doctest
import sys

import pytest

import semkt_plugin.domain
import semkt_plugin.strategies.skt.losses
import semkt_plugin.wrapping
from semkt_plugin import check_adapter

MODULES = [
    semkt_plugin.wrapping,
    sys.modules[check_adapter.__module__],  # wherever check_adapter lives
    semkt_plugin.domain,
    semkt_plugin.strategies.skt.losses,
]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {module.__name__} failed"
