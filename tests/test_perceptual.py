import pytest
import torch

from semkt_plugin.perceptual import VGG19Features, build_perceptual, vgg19_state_dict


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A VGG19 state_dict file of our own (random weights): the real ImageNet file cannot be downloaded here."""
    from torchvision.models import vgg19

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(vgg19().state_dict(), path)
    return path


def test_vgg19_from_a_local_file_is_frozen_and_cut_at_conv5_4(vgg_file):
    phi = VGG19Features(vgg_file)
    phi.train()
    assert not phi.training and not any(p.requires_grad for p in phi.parameters())
    assert isinstance(phi.body[-1], torch.nn.Conv2d) and phi.body[-1].out_channels == 512  # conv5_4, before ReLU
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    (feat,) = phi(x)
    assert feat.shape == (1, 512, 4, 4)
    feat.sum().backward()
    assert x.grad is not None  # a loss network: gradient reaches the image, not the weights


def test_missing_vgg_weights_name_the_fixes(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vgg19_state_dict(tmp_path / "nope.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache: nothing is downloaded
    with pytest.raises(FileNotFoundError, match="perceptual='skb'"):
        vgg19_state_dict(None)


def test_perceptual_choices():
    assert build_perceptual("none") is None
    with pytest.raises(ValueError, match="needs the SKB"):
        build_perceptual("skb", skb=None)
    with pytest.raises(ValueError, match="'vgg19', 'skb' or 'none'"):
        build_perceptual("lpips")
