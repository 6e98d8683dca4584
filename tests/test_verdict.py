"""The verdict's statistics against hand-computed values, and the experiment end to end at toy size."""
import json
import math
import warnings

import pytest
import torch

from semkt_plugin import cli
from semkt_plugin.diagnostics.stats import paired_gain
from semkt_plugin.reproduction.verdict import summarise, variants


def test_paired_gain_mean_interval_and_seeds():
    gain = paired_gain([30.5, 31.0, 29.8, 30.9, 30.2], [30.0, 30.0, 30.0, 30.0, 30.0])
    assert gain.per_seed == pytest.approx([0.5, 1.0, -0.2, 0.9, 0.2])
    assert gain.mean == pytest.approx(0.48)
    sd = math.sqrt(sum((g - 0.48) ** 2 for g in gain.per_seed) / 4)
    half = 2.7764451052 * sd / math.sqrt(5)  # t_{0.975, 4}
    assert gain.ci == pytest.approx((0.48 - half, 0.48 + half))
    assert not gain.above_zero  # the interval reaches below zero
    assert paired_gain([1.2, 1.25, 1.3], [1.0, 1.0, 1.0]).above_zero
    one = paired_gain([2.0], [1.0])
    assert one.ci is None and not one.above_zero
    with pytest.raises(ValueError, match="same"):
        paired_gain([1.0, 2.0], [1.0])


def test_variants_share_the_offline_settings_and_switch_one_component_off():
    rows = variants({"lambda_feat": 0.1}, ablations=True)
    assert [r.name for r in rows] == ["AHDR", "AHDR + semkt", "AHDR + semkt w/o L_content", "AHDR + semkt w/o L_color",
                                      "AHDR + semkt w/o SKAM", "AHDR + semkt w/o priors"]
    assert rows[0].semkt is None and rows[1].semkt == {
        "skb_weights": "standin", "perceptual": "skb", "lambda_feat": 0.1
    }
    assert rows[4].semkt == {**rows[1].semkt, "use_skam": False}
    named = variants({}, ablations=False, named=['a={"lambda_content": 1}'])
    assert named[1].name == "AHDR + semkt a" and named[1].semkt["lambda_content"] == 1


def _record(seed: int, psnr: float, threads: int | None) -> dict:
    metrics = {"psnr_mu": psnr, "psnr_l": psnr, "ssim_mu": 0.9, "ssim_l": 0.9}
    record = {"seed": seed, "test": metrics, "train": {"seconds": 1.0}}
    return record if threads is None else {**record, "threads": threads}


def test_pairs_trained_with_different_thread_counts_are_warned_of():
    base = [_record(0, 30.0, 2), _record(1, 30.0, 1)]
    with pytest.warns(UserWarning, match=r"seed 1: 'AHDR \+ semkt' trained with 2 CPU thread\(s\), its baseline "
                                         r"'AHDR' with 1.*same OMP_NUM_THREADS") as record:
        summary = summarise({"AHDR": base, "AHDR + semkt": [_record(0, 30.5, 2), _record(1, 30.2, 2)]})
    assert len(record) == 1  # seed 0's pair matches
    assert summary["AHDR + semkt"]["gain"]["psnr_mu"]["per_seed"] == pytest.approx([0.5, 0.2])  # still reported
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal counts, or records from before the count was kept
        summarise({"AHDR": base, "AHDR + semkt": [_record(0, 30.5, 2), _record(1, 30.2, 1)]})
        summarise({"AHDR": base, "AHDR + semkt": [_record(0, 30.5, None), _record(1, 30.2, None)]})


@pytest.mark.slow  # four tiny training runs, two with the stand-in SKB
def test_verdict_end_to_end_writes_gains_per_seed(tmp_path, capsys):
    from semkt_plugin.reproduction.synth import generate_dataset

    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 48), seed=0)
    args = ["verdict", "--data", str(data), "--out", str(tmp_path / "v"), "--seeds", "2", "--steps", "2",
            "--crop", "32", "--batchsize", "1", "--nFeat", "8", "--growthRate", "4", "--nDenselayer", "2",
            "--device", "cpu"]
    assert cli.main(args) == 0
    result = json.loads((tmp_path / "v" / "validation" / "verdict.json").read_text())
    assert result["settings"]["device"] == "cpu"
    run = json.loads((tmp_path / "v" / "validation" / "seed0" / "ahdr" / "run.json").read_text())
    assert run["args"][run["args"].index("--device") + 1] == "cpu"  # it reaches the example's own train.py
    gain = result["summary"]["AHDR + semkt"]["gain"]["psnr_mu"]
    base, semkt = (result["runs"][k] for k in ("AHDR", "AHDR + semkt"))
    assert [r["seed"] for r in base] == [0, 1] == [r["seed"] for r in semkt]
    assert gain["per_seed"] == pytest.approx([s["test"]["psnr_mu"] - b["test"]["psnr_mu"] for s, b in zip(semkt, base)])
    assert gain["ci"][0] <= gain["mean"] <= gain["ci"][1]
    assert all(r["threads"] == torch.get_num_threads() for r in base + semkt)
    printed = capsys.readouterr().out
    assert "95 % CI" in printed and "device  cpu" in printed and "SKB     standin" in printed
    assert "model   AHDR (the example, nFeat 8, growthRate 4, nDenselayer 2), " in printed
    assert (tmp_path / "v" / "validation" / "verdict.png").stat().st_size > 0
