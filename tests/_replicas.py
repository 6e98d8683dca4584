"""Loads the test replicas of tests/upstream/ and examples/ahdr/model.py by path (no package install needed)."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

from torch import nn

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
UPSTREAM = TESTS / "upstream"
EXPECTED = UPSTREAM / "expected"
AHDR_MODEL = ROOT / "examples" / "ahdr" / "model.py"
PACKAGE = "semkt_test_upstream"

NAMES = ("ahdr", "hdr_transformer", "sctnet", "safnet", "tmrnet")


def _package():
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, UPSTREAM / "__init__.py", submodule_search_locations=[str(UPSTREAM)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def replica_module(name: str):
    """The module of one replica (``tests/upstream/<name>.py``, or ``examples/ahdr/model.py`` for ``ahdr``)."""
    if name == "ahdr":
        key = "semkt_test_examples_ahdr_model"
        if key not in sys.modules:
            spec = importlib.util.spec_from_file_location(key, AHDR_MODEL)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            spec.loader.exec_module(module)
        return sys.modules[key]
    _package()
    return importlib.import_module(f"{PACKAGE}.{name}")


def build(name: str) -> nn.Module:
    """The replica at the upstream default configuration."""
    module = replica_module(name)
    if name == "ahdr":
        return module.AHDR(Namespace(nChannel=6, nDenselayer=6, nFeat=64, growthRate=32))
    return module.build()


def expected_listing(name: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of every parameter/buffer of the real upstream class, in ``state_dict`` order."""
    rows = []
    for line in (EXPECTED / f"{name}.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split()
        rows.append((key, () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))))
    return rows
