"""Frozen feature extractors for the perceptual term of L_content (eq. 5).

``vgg19`` is the paper's φ: torchvision's VGG19 cut after conv5_4 (the 4th convolution after the 4th max-pool,
before its ReLU), on ImageNet-normalised input. Its weights come from a local file or torch's hub cache; semkt
never downloads them itself. ``skb`` reuses the already-loaded SKB backbone (no second network in memory).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

VGG19_CONV5_4 = 35  # torchvision's vgg19().features[:35] ends with conv5_4
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def vgg19_state_dict(weights: str | Path | None = None) -> dict[str, Tensor]:
    """VGG19 ImageNet weights from ``weights`` (a state_dict file) or, if ``None``, torch's hub cache.

    Raises:
        FileNotFoundError: naming the file to provide and where torch looks for it.
    """
    from torchvision.models import VGG19_Weights

    if weights is None:
        url = VGG19_Weights.IMAGENET1K_V1.url
        weights = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if not weights.is_file():
            raise FileNotFoundError(
                f"VGG19 weights are not in torch's cache ({weights}). Download {url} there (or anywhere and pass "
                "wrap(..., vgg19_weights=PATH)), or choose perceptual='skb' or perceptual='none'."
            )
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"VGG19 weights file {weights} does not exist; pass the path of a VGG19 state_dict")
    return torch.load(weights, map_location="cpu", weights_only=True)


class VGG19Features(nn.Module):
    """VGG19 up to conv5_4, frozen: ``(B, 3, H, W)`` in ``[0, 1]`` → ``[(B, 512, H/16, W/16)]``."""

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg19

        net = vgg19()
        net.load_state_dict(vgg19_state_dict(weights))
        self.body = net.features[:VGG19_CONV5_4]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # frozen: no dropout/batch-norm mode changes from a parent's .train()

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.body((x - self.mean) / self.std)]


def build_perceptual(kind: str, weights: str | Path | None = None, skb: nn.Module | None = None
                     ) -> Callable[[Tensor], list[Tensor]] | None:
    """The φ of eq. 5: ``"vgg19"``, ``"skb"`` (the SKB's backbone features) or ``"none"``."""
    if kind == "vgg19":
        return VGG19Features(weights)
    if kind == "skb":
        if skb is None:
            raise ValueError("perceptual='skb' needs the SKB; it is disabled (use_priors off and lambda_color 0?)")
        return skb.features
    if kind == "none":
        return None
    raise ValueError(f"unknown perceptual network {kind!r}; use 'vgg19', 'skb' or 'none'")
