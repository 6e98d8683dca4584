"""The sibling strategies with their loss terms weighted to zero train bit-identical to their baselines: the
plugin's hooks, judge, teacher, region maps and extra forwards leave the model's data stream and gradients alone,
so every difference a strategy makes comes from its terms."""
import pytest

from semkt_plugin.reproduction.paired import Training, Variant, load_example, run
from semkt_plugin.reproduction.synth import generate_dataset


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data = generate_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_test=1, size=(48, 48), seed=0)
    return Training(data, steps=6, batchsize=2, crop=32, nFeat=8, growthRate=4, nDenselayer=2)


@pytest.mark.slow  # two short training runs of the tiny example AHDR
def test_smhdr_without_masking_or_weighting_trains_like_ahdr(setup, tmp_path):
    train, test = load_example()
    base = run(train, test, setup, Variant("AHDR"), 0, tmp_path / "base")
    off = {"peak_ratio": 0.0, "lambda_region": 0.0}
    smhdr = run(train, test, setup, Variant("SMHDR off", off, "smhdr", ["--skb", "standin"]), 0, tmp_path / "smhdr")
    assert smhdr["train"]["losses"] == base["train"]["losses"]  # every step's task loss, exactly


@pytest.mark.slow  # two short training runs; the SmartHDR one passes its warm-up and runs the unlabelled loss
def test_smarthdr_with_zero_weights_trains_like_ahdr_on_its_labelled_share(setup, tmp_path):
    train, test = load_example()
    share = ["--labelled_fraction", "0.5"]
    base = run(train, test, setup, Variant("AHDR, half", None, args=share), 0, tmp_path / "base")
    off = {"lambda_u": 0.0, "lambda_k": 0.0, "warmup": 2}
    smart = run(train, test, setup, Variant("SmartHDR off", off, "smarthdr", share), 0, tmp_path / "smart")
    assert smart["train"]["losses"] == base["train"]["losses"]
