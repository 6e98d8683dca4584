"""`semkt demo` end to end at toy size: data generated, paired runs trained and evaluated, outputs written."""
import json
import math

import pytest

from semkt_plugin import cli
from semkt_plugin.diagnostics.runtime import describe_device, resolve_device

TINY = ["--steps", "2", "--crop", "32", "--batchsize", "1", "--nFeat", "8", "--growthRate", "4", "--nDenselayer", "2",
        "--seeds", "1"]
TOY = ["--scenes", "synthetic", "--steps", "2", "--n_train", "1", "--n_test", "1", "--size", "32", "32", "--crop", "32",
       "--batchsize", "1", "--nFeat", "8", "--growthRate", "4", "--nDenselayer", "2", "--seeds", "1"]


@pytest.mark.slow  # two training runs, one with the stand-in SKB: a few seconds to ~20 s on 2 busy cores
def test_demo_writes_table_results_and_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), *TOY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["runs"]) == ["AHDR", "AHDR + semkt"]
    for (run,) in results["runs"].values():
        assert run["seed"] == 0 and len(run["train"]["losses"]) == 2
        assert all(math.isfinite(run["test"][k]) for k in ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l"))
    (boosted,) = results["runs"]["AHDR + semkt"]
    assert set(boosted["train"]["semkt_losses"][-1]) == {"spg", "content", "color", "feat", "orm", "total"}
    assert (out / "figure.png").stat().st_size > 0 and (out / "data" / "synth.json").exists()
    printed = capsys.readouterr().out
    assert "AHDR + semkt" in printed and "PSNR-μ" in printed and "gain over AHDR at the same seed" in printed
    device = str(resolve_device())  # cuda when there is one: the device reaches the example's train.py
    assert results["settings"]["device"] == device and boosted["args"][boosted["args"].index("--device") + 1] == device
    assert f"device  {describe_device(device)}" in printed and "SKB     standin" in printed


@pytest.mark.slow
def test_demo_runs_on_the_real_content_scenes_by_default(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    manifest = json.loads((out / "data" / "real.json").read_text())
    assert manifest["eval_split"] == "test"
    (run,) = results["runs"]["AHDR"]
    assert sorted(run["test"]["scenes"]) == sorted(f"{v}_0" for v in manifest["views"]["Test"])


@pytest.mark.slow
def test_demo_ablation_flag_switches_a_component_off(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), *TOY, "--no_skam"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["runs"]) == ["AHDR", "AHDR + semkt (w/o SKAM)"]
    (run,) = results["runs"]["AHDR + semkt (w/o SKAM)"]
    assert run["semkt"]["use_skam"] is False
    assert "feat" not in run["train"]["semkt_losses"][-1]


@pytest.mark.slow
def test_demo_gives_each_strategy_a_row_paired_with_its_own_baseline(tmp_path, capsys):
    out = tmp_path / "demo"
    toy = [*TOY]
    toy[toy.index("--n_train") + 1] = "4"
    assert cli.main(["demo", "--out", str(out), *toy, "--strategy", "smhdr", "smarthdr"]) == 0
    results = json.loads((out / "results.json").read_text())
    smart_row = "AHDR, 0.25 labelled + SmartHDR (ema 0.9, β 1)"
    assert list(results["runs"]) == ["AHDR", "AHDR + SMHDR (region maps only)", "AHDR, 0.25 labelled", smart_row]
    assert results["summary"]["AHDR + SMHDR (region maps only)"]["vs"] == "AHDR"
    assert results["runs"]["AHDR + SMHDR (region maps only)"][0]["semkt"] == {"region_prob": 1.0}
    assert results["summary"][smart_row]["vs"] == "AHDR, 0.25 labelled"
    assert "gain" not in results["summary"]["AHDR, 0.25 labelled"]
    (smart,) = results["runs"][smart_row]
    assert "--labelled_fraction" in smart["args"] and smart["args"][smart["args"].index("--strategy") + 1] == "smarthdr"
    assert smart["semkt"] == {"ema": 0.9, "beta": 1.0}  # the settings chosen on the validation split
    printed = capsys.readouterr().out
    assert f"{smart_row}  (vs AHDR, 0.25 labelled)" in printed
