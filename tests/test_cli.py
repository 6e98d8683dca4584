import json

import pytest

from semkt_plugin.cli import main

AHDR = ["--model", "examples/ahdr/model.py:AHDR", "--namespace", "--kwargs",
        json.dumps({"nChannel": 6, "nDenselayer": 1, "nFeat": 8, "growthRate": 4})]
INPUTS = ["--input", "1,6,16,16"] * 3


def test_adapters_lists_every_builtin_with_its_source(capsys):
    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    for name in ("ahdr", "hdr_transformer", "sctnet", "safnet", "tmrnet"):
        assert f"{name} " in out
    assert out.count("from semkt:builtin") == 5


def test_check_reports_each_hook_point(capsys):
    assert main(["check", *AHDR, "--adapter", "ahdr", *INPUTS]) == 0
    out = capsys.readouterr().out
    assert "H_in (1, 3, 16, 16)" in out
    assert out.count("ok      forward") == 3 and "fired 1x  map (1, 8, 16, 16)  channels 8" in out


def test_check_says_what_each_strategy_does_at_each_hook_point(capsys):
    assert main(["check", *AHDR, "--adapter", "ahdr", *INPUTS]) == 0
    lines = capsys.readouterr().out.splitlines()
    uses = {lines[i].split()[2]: lines[i + 1].strip() for i in range(len(lines)) if lines[i].startswith("  ok ")}
    assert uses["conv2"] == "skt: read for SKAM; smhdr: masked in training; smarthdr: read by the judge"
    assert uses["RDB2"] == uses["conv_up"] == "skt: read for SKAM"  # SMHDR masks the first point by default


def test_check_names_the_closest_modules_for_a_misspelled_path(tmp_path):
    adapter = tmp_path / "typo.yaml"
    adapter.write_text("name: typo\nhooks: [conv_2, RDB2]\n")
    with pytest.raises(KeyError, match="closest module names: conv2"):
        main(["check", *AHDR, "--adapter", str(adapter), *INPUTS])


def test_check_flags_a_hook_that_never_fires(tmp_path, capsys):
    adapter = tmp_path / "unused.yaml"
    adapter.write_text("name: unused\nhooks: [attConv1, RDB2]\n")  # defined in AHDR, never called
    assert main(["check", *AHDR, "--adapter", str(adapter), *INPUTS]) == 1
    assert "PROBLEM forward attConv1" in capsys.readouterr().out
