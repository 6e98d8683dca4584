import pytest
import torch

from semkt_plugin.strategies.skt.perceptual import VGG19Features, build_perceptual


def test_vgg19_from_a_local_file_is_frozen_and_cut_at_conv5_4(vgg19_file):
    phi = VGG19Features(vgg19_file)
    phi.train()
    assert not phi.training and not any(p.requires_grad for p in phi.parameters())
    assert isinstance(phi.body[-1], torch.nn.Conv2d) and phi.body[-1].out_channels == 512  # conv5_4, before ReLU
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    (feat,) = phi(x)
    assert feat.shape == (1, 512, 4, 4)
    feat.sum().backward()
    assert x.grad is not None  # a loss network: gradient reaches the image, not the weights


def test_perceptual_choices():
    assert build_perceptual("none") is None
    with pytest.raises(ValueError, match="needs the SKB"):
        build_perceptual("skb", skb=None)
    with pytest.raises(ValueError, match="'vgg19', 'skb' or 'none'"):
        build_perceptual("lpips")
