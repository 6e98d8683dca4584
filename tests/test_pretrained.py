"""The paper's pretrained networks: FastSAM-s and VGG19 from files of their real formats (random weights, built
here), found in their caches or downloaded there, and one error at wrap() naming all that is missing offline."""
from __future__ import annotations

import shutil
from copy import deepcopy
from pathlib import Path

import pytest
import torch
from conftest import FROM_STEP_0, TINY_ADAPTER, TinyHDR
from torch import nn

from semkt_plugin import wrap
from semkt_plugin.pretrained import MissingWeights
from semkt_plugin.skb import ASSET_URL, SemanticKnowledgeBank, fold_batch_norms, load_skb, ultralytics_sandbox
from semkt_plugin.strategies.skt.perceptual import VGG19Features, vgg19_state_dict

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
SMALL = dict(teacher_dim=8, teacher_heads=1, skam_latent=4, num_regions=4)  # the plugin's own parts, kept small


def _randomise(net: nn.Module) -> None:
    """Random batch-norm affine parameters and statistics too (a fresh network has ones and zeros there)."""
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def fastsam_s(tmp_path_factory) -> tuple[Path, nn.Module]:
    """FastSAM-s's architecture (YOLOv8s-seg, one class) with random weights, in FastSAM-s.pt's format: the
    checkpoint ultralytics' trainer writes (``save_model``: the network under ``"ema"``), finalised by ultralytics'
    own ``strip_optimizer`` as at the end of training, which moves the half-precision network to ``"model"``.
    Returns the file and the network as saved (half precision)."""
    with ultralytics_sandbox():
        from ultralytics import __version__
        from ultralytics.nn.tasks import SegmentationModel
        from ultralytics.utils import DEFAULT_CFG_DICT
        from ultralytics.utils.torch_utils import strip_optimizer

        torch.manual_seed(0)
        net = SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False)
        _randomise(net)
        args = {**DEFAULT_CFG_DICT, "model": "yolov8s-seg.yaml", "task": "segment", "imgsz": 1024, "single_cls": True}
        net.args = args
        ema = deepcopy(net).half()
        folder = tmp_path_factory.mktemp("fastsam")
        torch.save({"epoch": 99, "best_fitness": 0.5, "model": None, "ema": ema, "updates": 1000,
                    "optimizer": torch.optim.SGD(net.parameters(), lr=0.01).state_dict(), "train_args": args,
                    "date": "2023-06-21T00:00:00", "version": __version__}, folder / "last.pt")
        path = folder / "FastSAM-s.pt"
        strip_optimizer(folder / "last.pt", s=path)
    return path, ema


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The layers' state as float32, keyed as SemanticKnowledgeBank.layers' (no ``model.`` prefix)."""
    layers = net.layers if isinstance(net, SemanticKnowledgeBank) else net.model
    return {k: v.float() for k, v in layers.state_dict().items()}


def _assert_same_state(got: nn.Module, saved: nn.Module) -> None:
    """``got`` holds the weights of ``saved``, as the SKB keeps them: in float32, its BatchNorms folded."""
    folded = deepcopy(saved).float()
    fold_batch_norms(folded)
    a, b = _state(got), _state(folded)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fastsam_file_has_ultralytics_format(fastsam_s):
    path, _ = fastsam_s
    with ultralytics_sandbox():
        from ultralytics.nn.tasks import SegmentationModel

        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert {"model", "ema", "train_args", "date", "version", "epoch", "optimizer"} <= set(ckpt)
    assert isinstance(ckpt["model"], SegmentationModel) and ckpt["ema"] is None and ckpt["optimizer"] is None
    assert ckpt["epoch"] == -1 and ckpt["train_args"]["task"] == "segment"
    assert {p.dtype for p in ckpt["model"].parameters()} == {torch.float16}
    assert ckpt["model"].model[-1].nc == 1


def test_fastsam_file_loads_as_saved(fastsam_s):
    path, saved = fastsam_s
    skb = load_skb(path, num_regions=4)
    _assert_same_state(skb, saved)
    assert skb.channels == (64, 128, 256, 512)
    assert {p.dtype for p in skb.parameters()} == {torch.float32}
    x = torch.rand(1, 3, 70, 96)
    out = skb(x)
    assert [tuple(f.shape) for f in out.features] == [(1, 64, 18, 24), (1, 128, 9, 12), (1, 256, 5, 6),
                                                      (1, 512, 3, 3)]
    assert out.regions.shape == (1, 4, 70, 96)
    reference = SemanticKnowledgeBank(deepcopy(saved).float().eval(), num_regions=4)  # the network saved, not read
    for a, b in zip(out.features, reference.features(x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wrap_with_the_fastsam_file(fastsam_s, batch):
    path, saved = fastsam_s
    frames, gt = batch
    model = TinyHDR()
    skt = wrap(model, TINY_ADAPTER, skb_weights=str(path), perceptual="skb", **SMALL, **FROM_STEP_0)
    _assert_same_state(skt.skb, saved)
    features = skt.perceptual(gt)
    assert [tuple(f.shape) for f in features] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2), (2, 512, 1, 1)]
    loss = skt.loss(model(*frames), gt)
    assert torch.isfinite(loss) and {"spg", "content", "color", "feat"} <= set(skt.last_losses)
    skt.unwrap()


def test_fastsam_by_name_from_ultralytics_weights_dir_or_its_download(fastsam_s, no_network, monkeypatch):
    path, saved = fastsam_s
    weights_dir = no_network / "ultralytics"
    shutil.copy(path, weights_dir / "FastSAM-s.pt")
    _assert_same_state(load_skb("FastSAM-s.pt", num_regions=4), saved)  # found there, nothing downloaded
    (weights_dir / "FastSAM-s.pt").unlink()

    from ultralytics.utils import downloads

    asked = []

    def download(url, file=None, **kwargs):  # what ultralytics' downloader does online, from our file
        asked.append((url, Path(file)))
        shutil.copy(path, file)

    monkeypatch.setattr(downloads, "safe_download", download)
    _assert_same_state(load_skb("FastSAM-s.pt", num_regions=4), saved)
    assert asked == [(ASSET_URL.format(name="FastSAM-s.pt"), weights_dir / "FastSAM-s.pt")]
    assert not (no_network / "cwd" / "FastSAM-s.pt").exists()  # not into the working directory


def wrap_fails(ahdr) -> str:
    """The message of the one error default settings raise at ``wrap`` with files missing."""
    with pytest.raises(MissingWeights) as info:
        wrap(ahdr, "ahdr", total_steps=10)
    assert isinstance(info.value, FileNotFoundError)
    return str(info.value)


def cache_vgg19(vgg19_file, no_network) -> None:
    """Put the VGG19 file where torchvision's weights look first: torch's hub cache (under ``no_network``)."""
    cache = no_network / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(vgg19_file, cache / "vgg19-dcbb9e9d.pth")


def test_vgg19_from_torch_hub_cache_and_from_a_file(vgg19_file, no_network):
    saved = torch.load(vgg19_file, weights_only=True)
    cache_vgg19(vgg19_file, no_network)
    for weights in (None, vgg19_file):  # the default: torch's cache, without network
        got = vgg19_state_dict(weights)
        assert got.keys() == saved.keys() and all(torch.equal(got[k], saved[k]) for k in saved)
    phi = VGG19Features(None)
    body = {k: v for k, v in saved.items() if k.startswith("features.") and int(k.split(".")[1]) < 35}
    assert {f"features.{k}": v for k, v in phi.body.state_dict().items()}.keys() == body.keys()
    assert all(torch.equal(phi.body.state_dict()[k.removeprefix("features.")], v) for k, v in body.items())


def test_vgg19_is_downloaded_into_torch_hub_cache(vgg19_file, no_network, monkeypatch):
    asked = []

    def download(url, dst, hash_prefix=None, progress=True):  # what torch.hub does online, from our file
        asked.append((url, Path(dst), hash_prefix))
        shutil.copy(vgg19_file, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    saved = torch.load(vgg19_file, weights_only=True)
    got = vgg19_state_dict(None, progress=False)
    assert all(torch.equal(got[k], saved[k]) for k in saved)
    assert asked == [(VGG19_URL, no_network / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth", "dcbb9e9d")]


def test_vgg19_offline_names_cache_url_and_settings(no_network):
    with pytest.raises(MissingWeights) as info:
        vgg19_state_dict(None)
    message = str(info.value)
    for part in (str(no_network / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"), VGG19_URL, "URLError",
                 "vgg19_weights=PATH", 'perceptual="skb"'):
        assert part in message
    with pytest.raises(MissingWeights, match="does not exist"):
        vgg19_state_dict(no_network / "nope.pth")


@pytest.fixture
def ahdr():
    from _replicas import build

    return build("ahdr")


@pytest.fixture
def no_teacher(monkeypatch):
    """Building the teacher (the plugin's heavy part after the pretrained networks) fails the test."""
    import semkt_plugin.strategies.skt.strategy as skt_module

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was built before every weights file was found")

    monkeypatch.setattr(skt_module, "SPGRM", refuse)


def test_offline_defaults_fail_at_wrap_with_one_error(ahdr, no_network, no_teacher):
    message = wrap_fails(ahdr)
    assert "SKB weights 'FastSAM-s.pt'" in message and "VGG19 weights" in message
    assert message.endswith('Offline, set skb_weights="standin", perceptual="skb".')
    assert str(no_network / "ultralytics") in message and str(no_network / "torch") in message


def test_a_local_fastsam_without_vgg19_names_only_vgg19(fastsam_s, ahdr, no_network, no_teacher):
    shutil.copy(fastsam_s[0], no_network / "cwd" / "FastSAM-s.pt")  # found in the working directory
    message = wrap_fails(ahdr)
    assert "VGG19 weights" in message and "SKB" not in message
    assert message.endswith('Offline, set perceptual="skb".')


def test_a_cached_vgg19_without_fastsam_names_only_the_skb(vgg19_file, ahdr, no_network, no_teacher):
    cache_vgg19(vgg19_file, no_network)
    message = wrap_fails(ahdr)
    assert "SKB weights 'FastSAM-s.pt'" in message and "VGG19" not in message
    assert message.endswith('Offline, set skb_weights="standin".')


def test_default_settings_with_both_files_wrap_offline(fastsam_s, vgg19_file, ahdr, no_network):
    shutil.copy(fastsam_s[0], no_network / "ultralytics" / "FastSAM-s.pt")
    cache_vgg19(vgg19_file, no_network)
    skt = wrap(ahdr, "ahdr", total_steps=10)
    _assert_same_state(skt.skb, fastsam_s[1])
    assert isinstance(skt.perceptual, VGG19Features)
    skt.unwrap()
