"""Frozen feature extractors for the perceptual term of L_content (eq. 5).

``vgg19`` is the paper's φ: torchvision's VGG19 cut after conv5_4 (the 4th convolution after the 4th max-pool,
before its ReLU), on ImageNet-normalised input. Its weights are torchvision's ``VGG19_Weights.IMAGENET1K_V1``,
read from torch's hub cache (``$TORCH_HOME/hub/checkpoints``) and downloaded there by torch.hub when missing, or
any VGG19 state_dict file. ``skb`` reuses the already-loaded SKB backbone (no second network in memory).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from ...pretrained import MissingWeights

VGG19_CONV5_4 = 35  # torchvision's vgg19().features[:35] ends with conv5_4
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
OFFLINE = 'perceptual="skb"'  # the SKB's own backbone: no second set of weights to download


def vgg19_state_dict(weights: str | Path | None = None, progress: bool = True) -> dict[str, Tensor]:
    """VGG19 ImageNet weights from ``weights`` (a state_dict file) or, if ``None``, torchvision's
    ``VGG19_Weights.IMAGENET1K_V1``: torch's hub cache, where torch.hub first downloads them if missing.

    Args:
        weights: a VGG19 state_dict file, or ``None``.
        progress: show the download's progress bar.

    Raises:
        MissingWeights: the file does not exist, or the weights are not cached and the download failed (offline),
            naming the file, where torch looks for it and its URL.
    """
    from torchvision.models import VGG19_Weights

    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingWeights(f"VGG19 weights file {path} does not exist; pass vgg19_weights=<a VGG19 state_dict "
                                 "file>, or None for torchvision's ImageNet weights.", OFFLINE)
        return torch.load(path, map_location="cpu", weights_only=True)
    imagenet = VGG19_Weights.IMAGENET1K_V1
    try:  # torch.hub reads its cache file, or downloads it there first
        return imagenet.get_state_dict(progress=progress, check_hash=True, map_location="cpu", weights_only=True)
    except OSError as e:  # offline: urllib's URLError; also HTTP errors and an unwritable cache
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(imagenet.url).path).name
        raise MissingWeights(
            f"VGG19 weights (perceptual='vgg19') are not in torch's hub cache ({cache}) and could not be downloaded "
            f"from {imagenet.url} ({type(e).__name__}: {e}). Download that file into {cache.parent} (the TORCH_HOME "
            "environment variable moves the cache), or anywhere and pass vgg19_weights=PATH.", OFFLINE) from e


class VGG19Features(nn.Module):
    """VGG19 up to conv5_4, frozen: ``(B, 3, H, W)`` in ``[0, 1]`` → ``[(B, 512, H/16, W/16)]``.

    ``weights``: a VGG19 state_dict, or what :func:`vgg19_state_dict` takes.
    """

    def __init__(self, weights: Mapping[str, Tensor] | str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg19

        state = weights if isinstance(weights, Mapping) else vgg19_state_dict(weights)
        with torch.device("meta"):  # no random init of 140M parameters that the state_dict replaces
            net = vgg19()
        net.load_state_dict(state, assign=True)
        self.body = net.features[:VGG19_CONV5_4]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # frozen: no dropout/batch-norm mode changes from a parent's .train()

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.body(((x - self.mean) / self.std).to(self.mean.dtype)).float()]


def build_perceptual(kind: str, weights: Mapping[str, Tensor] | str | Path | None = None,
                     skb: nn.Module | None = None) -> Callable[[Tensor], list[Tensor]] | None:
    """The φ of eq. 5: ``"vgg19"`` (from ``weights``, see :class:`VGG19Features`), ``"skb"`` (the SKB's backbone
    features) or ``"none"``."""
    if kind == "vgg19":
        return VGG19Features(weights)
    if kind == "skb":
        if skb is None:
            raise ValueError("perceptual='skb' needs the SKB; it is disabled (use_priors off and lambda_color 0?)")
        return skb.features
    if kind == "none":
        return None
    raise ValueError(f"unknown perceptual network {kind!r}; use 'vgg19', 'skb' or 'none'")
