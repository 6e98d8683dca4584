"""The example AHDR repository: train a tiny baseline for 2 steps, then evaluate it."""
import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from semkt_plugin.reproduction.synth import generate_dataset

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ahdr"
MODULES = ("model", "dataset", "train", "test")
TINY = ["--nFeat", "8", "--growthRate", "4", "--nDenselayer", "2"]


@pytest.fixture
def example(monkeypatch):
    """The example's train and test modules, imported as their scripts see each other (flat names)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in MODULES:  # "test" is also a stdlib package, "model" a common name: import ours afresh
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield importlib.import_module("train"), importlib.import_module("test")
    for name in MODULES:
        sys.modules.pop(name, None)


def test_baseline_trains_and_evaluates(example, tmp_path):
    train, test = example
    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(32, 48), seed=0)
    ckpt = tmp_path / "ckpt"
    summary = train.main(["--data_dir", str(data), "--trained_model_dir", str(ckpt), "--steps", "2",
                          "--batchsize", "2", "--crop", "24", *TINY])
    assert len(summary["losses"]) == 2 and all(math.isfinite(loss) for loss in summary["losses"])
    state = torch.load(summary["checkpoint"])
    assert "RDB3.dense_layers.1.conv.weight" in state and state["conv1.weight"].shape == (8, 6, 3, 3)

    result = test.main(["--data_dir", str(data), "--trained_model_dir", str(ckpt), *TINY])
    assert list(result["scenes"]) == ["000"]
    for key in ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l"):
        assert math.isfinite(result[key])
    assert -1 <= result["ssim_mu"] <= 1 and -1 <= result["ssim_l"] <= 1


@pytest.mark.slow  # loads the stand-in SKB: ~15 s on 2 busy cores
def test_semkt_flag_trains_and_saves_plain_ahdr_weights(example, tmp_path):
    train, _ = example
    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(64, 64), seed=0)
    config = tmp_path / "semkt.json"
    config.write_text('{"skb_weights": "standin", "perceptual": "skb"}')  # offline: no FastSAM / VGG download
    common = ["--data_dir", str(data), "--steps", "1", "--batchsize", "1", "--crop", "64", *TINY]
    base = train.main([*common, "--trained_model_dir", str(tmp_path / "base")])
    semkt = train.main([*common, "--trained_model_dir", str(tmp_path / "semkt"), "--semkt",
                        "--semkt_config", str(config)])
    # same seed, same data: the first step sees the same weights and batch, so the same μ-law L1
    assert semkt["losses"][0] == base["losses"][0]
    base_state, semkt_state = torch.load(base["checkpoint"]), torch.load(semkt["checkpoint"])
    assert list(semkt_state) == list(base_state)
    assert all(semkt_state[k].shape == v.shape for k, v in base_state.items())


@pytest.mark.slow  # builds the region maps with the stand-in SKB
def test_smhdr_strategy_caches_region_maps_and_masks_in_training(example, tmp_path):
    train, _ = example
    data = generate_dataset(tmp_path / "data", n_train=2, n_test=1, size=(48, 48), seed=0)
    config = tmp_path / "smhdr.json"
    config.write_text('{"ramp_start": 0, "ramp_peak": 1, "ramp_end": 3}')  # masking from the first step
    common = ["--data_dir", str(data), "--steps", "3", "--batchsize", "2", "--crop", "32", *TINY]
    base = train.main([*common, "--trained_model_dir", str(tmp_path / "base")])
    run = train.main([*common, "--trained_model_dir", str(tmp_path / "smhdr"), "--semkt", "--strategy", "smhdr",
                      "--skb", "standin", "--semkt_config", str(config)])
    assert all((d / "masks.npy").exists() for d in (data / "Training").iterdir())
    assert [r["ratio"] for r in run["semkt_losses"]][1] > 0 and all(math.isfinite(loss) for loss in run["losses"])
    assert run["losses"][0] == base["losses"][0]  # ratio 0 at step 0: the same forward as the baseline
    assert list(torch.load(run["checkpoint"])) == list(torch.load(base["checkpoint"]))


def test_labelled_fraction_and_smarthdr_use_the_other_scenes_unlabelled(example, tmp_path):
    train, _ = example
    assert train.labelled_scenes(8, 0.25) == [0, 4] and train.labelled_scenes(3, 0.1) == [0]
    data = generate_dataset(tmp_path / "data", n_train=4, n_test=1, size=(32, 32), seed=0)
    common = ["--data_dir", str(data), "--steps", "2", "--batchsize", "1", "--crop", "32", *TINY,
              "--labelled_fraction", "0.5"]
    few = train.main([*common, "--trained_model_dir", str(tmp_path / "few")])
    config = tmp_path / "smart.json"
    config.write_text('{"warmup": 1}')
    run = train.main([*common, "--trained_model_dir", str(tmp_path / "smart"), "--semkt", "--strategy", "smarthdr",
                      "--semkt_config", str(config)])
    assert run["losses"][0] == few["losses"][0]  # same labelled batch, same initial weights
    warm, semi = run["semkt_losses"]
    assert warm["u_l1"] == 0 and semi["u_l1"] > 0 and 0 < semi["kept"] <= 1
    with pytest.raises(SystemExit, match="unlabelled scenes"):
        train.main([*common[:-2], "--trained_model_dir", str(tmp_path / "x"), "--semkt", "--strategy", "smarthdr"])
