import subprocess
import sys

import pytest

from semkt_plugin import Adapter, HookPoint, hookimpl
from semkt_plugin import registry
from semkt_plugin.registry import get_adapter

EXTERNAL_SETUP = """
[metadata]
name = semkt-ext-demo
version = 0.0.1

[options]
py_modules = semkt_ext_demo

[options.entry_points]
semkt.adapters =
    extdemo = semkt_ext_demo
"""

EXTERNAL_MODULE = """
from semkt_plugin import Adapter, HookPoint, hookimpl

NAME = {name!r}

@hookimpl
def semkt_register_adapters():
    return [Adapter(name=NAME, hooks=[HookPoint("body.3")], description="from another package")]
"""

LIST = "from semkt_plugin.registry import adapters; print(sorted((n, a.source) for n, a in adapters().items()))"


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A tiny third-party distribution, really installed (pip --target) into a temporary directory."""

    def install(name):
        src = tmp_path_factory.mktemp(f"src_{name}")
        (src / "setup.cfg").write_text(EXTERNAL_SETUP)
        (src / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                             'build-backend = "setuptools.build_meta"\n')
        (src / "semkt_ext_demo.py").write_text(EXTERNAL_MODULE.format(name=name))
        target = tmp_path_factory.mktemp(f"site_{name}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(src)], check=True, capture_output=True)
        return target

    return install


def _list(site, **env):
    import os

    result = subprocess.run([sys.executable, "-c", LIST], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(site), **env})
    return result


def test_third_party_adapter_is_discovered_through_its_entry_point(external):
    out = _list(external("extdemo"))
    assert out.returncode == 0, out.stderr
    assert "('extdemo', 'semkt-ext-demo:extdemo')" in out.stdout
    assert "('ahdr', 'semkt:builtin')" in out.stdout  # built-ins come the same way


def test_disable_switch_skips_third_party_but_keeps_builtin(external):
    out = _list(external("extdemo2"), SEMKT_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    assert "extdemo2" not in out.stdout and "'ahdr'" in out.stdout


def test_duplicate_names_name_both_sources(external):
    out = _list(external("ahdr"))
    assert out.returncode != 0
    assert "two adapters are named 'ahdr'" in out.stderr
    assert "semkt:builtin" in out.stderr and "semkt-ext-demo:extdemo" in out.stderr


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
