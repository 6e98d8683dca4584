import os
import subprocess
import sys

import pytest

from semkt_plugin import Adapter, HookPoint, hookimpl, registry
from semkt_plugin.registry import get_adapter

EXTERNAL_SETUP = """
[metadata]
name = semkt-ext-demo
version = 0.0.1

[options]
py_modules = semkt_ext_demo

[options.entry_points]
semkt.plugins =
    extdemo = semkt_ext_demo
"""

ADAPTER_MODULE = """
from semkt_plugin import Adapter, HookPoint, hookimpl

@hookimpl
def semkt_register_adapters():
    return [Adapter(name={name!r}, hooks=[HookPoint("body.3")], description="from another package")]
"""

# a package whose import fails, as one with a missing dependency does
BROKEN_MODULE = """
import semkt_ext_dependency_that_is_not_installed
"""

STRATEGY_MODULE = """
from dataclasses import dataclass

import torch
from semkt_plugin import Settings, Strategy, hookimpl


@dataclass
class ScaledL1Config(Settings):
    weight: float = 2.0


class ScaledL1(Strategy):
    name = "scaled_l1"
    settings_class = ScaledL1Config

    def __init__(self, model, adapter, config, skb=None):
        super().__init__(model, adapter, config, skb)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self._follow_model()

    def loss(self, output, target):
        opened = self.open(output, target, self.scale)
        return self.config.weight * self.scale * (opened.tone_out - opened.tone_gt).abs().mean()


@hookimpl
def semkt_register_strategies():
    return [ScaledL1]
"""

LIST = "from semkt_plugin.registry import adapters; print(sorted((n, a.source) for n, a in adapters().items()))"

# the example AHDR wrapped by name, one training loss computed
WRAP = """
import warnings
from argparse import Namespace

import torch
from semkt_plugin import wrap
from semkt_plugin.example_ahdr.model import AHDR

torch.manual_seed(0)
model = AHDR(Namespace(nChannel=6, nFeat=8, growthRate=4, nDenselayer=1))
frames = [torch.rand(1, 6, 32, 32) for _ in range(3)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    skt = wrap(model, "ahdr", strategy={strategy!r}, total_steps=10, **{overrides})
out = model(*frames)
loss = skt.loss(out, torch.rand_like(out))
loss.backward()
print("loss", float(loss))
for w in caught:
    print("warning", w.message)
"""


# nothing that needs downloaded weights
SKT_OFFLINE = dict(lambda_color=0.0, use_priors=False, perceptual="none")


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A tiny third-party distribution with ``module`` as its plugin, really installed (pip --target) into a
    temporary directory."""

    def install(module: str):
        src = tmp_path_factory.mktemp("src")
        (src / "setup.cfg").write_text(EXTERNAL_SETUP)
        (src / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                             'build-backend = "setuptools.build_meta"\n')
        (src / "semkt_ext_demo.py").write_text(module)
        target = tmp_path_factory.mktemp("site")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], check=True, capture_output=True)
        return target

    return install


def _run(code, site, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(site), **env})


def test_third_party_adapter_is_discovered_through_its_entry_point(external):
    out = _run(LIST, external(ADAPTER_MODULE.format(name="extdemo")))
    assert out.returncode == 0, out.stderr
    assert "('extdemo', 'semkt-ext-demo:extdemo')" in out.stdout
    assert "('ahdr', 'semkt:builtin')" in out.stdout  # built-ins come the same way


def test_disable_switch_skips_third_party_but_keeps_builtin(external):
    out = _run(LIST, external(ADAPTER_MODULE.format(name="extdemo2")), SEMKT_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    assert "extdemo2" not in out.stdout and "'ahdr'" in out.stdout


def test_duplicate_names_name_both_sources(external):
    out = _run(LIST, external(ADAPTER_MODULE.format(name="ahdr")))
    assert out.returncode != 0
    assert "two adapters are named 'ahdr'" in out.stderr
    assert "semkt:builtin" in out.stderr and "semkt-ext-demo:extdemo" in out.stderr


def test_broken_third_party_plugin_is_skipped_with_a_warning_naming_it(external):
    site = external(BROKEN_MODULE)
    out = _run(WRAP.format(strategy="skt", overrides=SKT_OFFLINE), site)
    assert out.returncode == 0, out.stderr
    assert "loss " in out.stdout
    warning = next(line for line in out.stdout.splitlines() if line.startswith("warning"))
    assert "'semkt-ext-demo'" in warning and "'extdemo'" in warning and "semkt_ext_dependency" in warning
    # asking for what only a broken plugin could give names it in the error
    missing = _run("from semkt_plugin.registry import get_adapter; get_adapter('extdemo')", site)
    assert missing.returncode != 0
    assert "no adapter named 'extdemo'" in missing.stderr and "'extdemo' (semkt-ext-demo: ModuleNotFoundError" in \
        missing.stderr


def test_third_party_strategy_is_registered_and_wraps(external):
    out = _run(WRAP.format(strategy="scaled_l1", overrides={}), external(STRATEGY_MODULE))
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[1]) > 0 and "warning" not in out.stdout
    names = _run("from semkt_plugin.registry import strategies; print(sorted(strategies()))", external(STRATEGY_MODULE))
    assert "['scaled_l1', 'skt', 'smarthdr', 'smhdr']" in names.stdout, names.stderr


class _Plugin:
    @hookimpl
    def semkt_register_adapters(self):
        return [Adapter("by-hand", [HookPoint("conv")])]


def test_register_by_hand_and_lookup_errors():
    registry.reset()
    registry.register(_Plugin(), name="tests:by-hand")
    try:
        assert get_adapter("by-hand").source == "tests:by-hand"
        with pytest.raises(KeyError, match="did you mean ahdr"):
            get_adapter("ahdrr")
    finally:
        registry.reset()


def test_adapter_from_dict_and_files(tmp_path):
    data = {"name": "mynet", "hooks": ["body.0", {"path": "body.2", "kind": "pre"}], "output": 0}
    assert get_adapter(data).hooks[1].kind == "pre"
    (tmp_path / "a.yaml").write_text("name: mynet\nhooks: [body.0]\ndomain: raw\nscale: 16\nnegative: clamp\n")
    (tmp_path / "a.toml").write_text('name = "mynet"\nhooks = ["body.0"]\n')
    assert get_adapter(tmp_path / "a.yaml").domain == "raw"
    assert get_adapter(str(tmp_path / "a.toml")).hooks[0].path == "body.0"
    round_trip = Adapter.from_dict(get_adapter(data).to_dict())
    assert round_trip.hooks == get_adapter(data).hooks
    with pytest.raises(ValueError, match="unknown"):
        Adapter.from_dict({"name": "x", "hook": []})
