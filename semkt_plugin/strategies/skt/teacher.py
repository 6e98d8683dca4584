"""SPGRM, the teacher (§3.2): refines T(H_in) in the SDR domain with the SKB's multi-scale features.

Layout: a 3×3 head; an FPN maps the four SKB features to the teacher's width; three semantic-guided
fusion modules, each two residual blocks and a Prior Fusion Block that takes FPN level ``k`` (strides 4, 8, 16 for
modules 1–3: fine detail first, wider context deeper); a 3×3 tail predicts a residual, so an untrained teacher
starts as the identity on T(H_in). The three module outputs are the teacher features F_T^k that SKAM aligns with.
With ``use_priors=False`` the Prior Fusion Blocks are skipped: the paper's "w/o FastSAM" ablation, a plain
second-stage enhancer of the same depth.

``stride=s > 1`` is a slimmer teacher with other results: the head folds each ``s × s`` block into channels
(pixel unshuffle), the fusion modules run at ``1/s`` resolution, so the teacher features are ``s`` times smaller,
and the tail unfolds a residual back to full resolution (pixel shuffle).

The trunk keeps the caller's memory layout. Inside the Prior Fusion Blocks the maps are channels-last where that
saves copies: LayerNorm2d returns a channels-last view, so the projections after it run in that layout (the CPU's
depth-wise convolutions are faster in it; docs/training.md); the prior is made channels-last while it is
small, so its upsampled map needs no copy for its LayerNorm; each norm's scale and shift are folded into the 1×1
projection after it (:meth:`LayerNorm2d.project`); the attention reads q, k, v in place.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ...validation import check
from .pixel_products import cosine_gram, pixel_mix, split_k


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel of a ``(B, C, H, W)`` map.

    The result is a channels-last view of the normalised ``(B, H, W, C)`` map; on a channels-last input the
    permute in is a view too, so nothing is copied.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def _rows(self, x: Tensor, affine: bool) -> Tensor:
        n = self.norm
        weight, bias = (n.weight, n.bias) if affine else (None, None)
        return F.layer_norm(x.permute(0, 2, 3, 1), n.normalized_shape, weight, bias, n.eps)

    def forward(self, x: Tensor) -> Tensor:
        return self._rows(x, affine=True).permute(0, 3, 1, 2)

    def project(self, x: Tensor, conv: nn.Conv2d) -> Tensor:
        """``conv(self(x))`` for a 1×1 ``conv`` with a bias, the norm's scale and shift folded into the
        convolution's weight and bias: the same map up to rounding, and the norm's backward has no weight gradients
        to compute (they come through the fold). ``conv`` is called with the folded weights, so its hooks see it."""
        n = self.norm
        folded = {"weight": conv.weight * n.weight.view(1, -1, 1, 1),
                  "bias": torch.addmv(conv.bias, conv.weight.flatten(1), n.bias)}
        return functional_call(conv, folded, (self._rows(x, affine=False).permute(0, 3, 1, 2),))


def _project(in_ch: int, out_ch: int) -> nn.Sequential:
    """Point-wise 1×1 then depth-wise 3×3 convolution (the W_c, W_d pair of eq. 4)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.Conv2d(out_ch, out_ch, 3, padding=1, groups=out_ch))


class PriorFusionBlock(nn.Module):
    """Eq. 4: ``F + W_c · V · softmax(K·Q / γ)``, transposed (channel × channel) attention, Q from the prior.

    Args:
        dim: feature channels C.
        prior_dim: prior channels.
        heads: attention heads; ``dim`` must divide by it.

    Shapes:
        feature ``(B, C, H, W)``, prior ``(B, C_p, h, w)`` (resized to ``H, W``) → ``(B, C, H, W)``, in the
        feature's memory layout.
    """

    def __init__(self, dim: int, prior_dim: int, heads: int = 2) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm_f, self.norm_p = LayerNorm2d(dim), LayerNorm2d(prior_dim)
        self.q = _project(prior_dim, dim)
        self.kv = _project(dim, 2 * dim)
        self.gamma = nn.Parameter(torch.ones(heads, 1, 1))  # learnable temperature per head
        self.out = nn.Conv2d(dim, dim, 1)

    #: cut the products over the pixels into slices (:func:`.pixel_products.split_k`): ``None`` does it on a GPU,
    #: where it is what fills the GPU; on the CPU the long products run at full speed as they are
    sliced: bool | None = None

    def forward(self, feature: Tensor, prior: Tensor) -> Tensor:
        b, c, h, w = feature.shape
        sliced = feature.is_cuda if self.sliced is None else self.sliced
        slices = split_k(h * w) if sliced else 1
        prior = F.interpolate(prior.contiguous(memory_format=torch.channels_last), size=(h, w), mode="bilinear",
                              align_corners=False)
        q = self.q[1](self.norm_p.project(prior, self.q[0])).flatten(2)  # (B, C, HW), a view in either layout
        k, v = (t.flatten(2) for t in self.kv[1](self.norm_f.project(feature, self.kv[0])).chunk(2, dim=1))
        # cosine similarity keeps the softmax scale sane; dividing the (C × C) products by the norms gives what
        # F.normalize on q and k would, without two more (C, HW) maps to write and differentiate
        gamma = self.gamma.view(self.heads, 1).expand(self.heads, c // self.heads).reshape(c, 1)  # per row
        logits = cosine_gram(q, k, slices) * gamma  # (B, C_q, C_k)
        # all heads share one product over the whole channel range, which needs no per-head copies of q, k, v;
        # masking the pairs across heads leaves each head's own softmax, exactly, and zero weight elsewhere
        if self.heads > 1:
            head = torch.arange(c, device=feature.device) // (c // self.heads)
            logits = logits.masked_fill(head[:, None] != head[None, :], float("-inf"))
        # eq. 4 is Restormer's V·softmax(K·Q/γ): row i holds query channel i's weights over the key channels j,
        # and those weights pick value channels j, which come from the same feature as the keys
        attn = logits.softmax(dim=-1)
        # the output projection W is 1×1, so it folds into those weights: W·(attn·V) = (W·attn)·V, a (C × C)
        # product instead of a full-resolution convolution
        mix = self.out.weight.flatten(1) @ attn  # (B, C_out, C_k)
        return pixel_mix(feature.flatten(2), mix, v, self.out.bias, slices).view(b, c, h, w)


class SpatialPriorFusion(nn.Module):
    """A per-pixel path for the prior: ``F ⊙ (1 + γ(p)) + β(p)``, a spatial feature transform (Wang et al., CVPR
    2018) whose scale and shift come from the prior at each pixel.

    Eq. 4 lets the prior act only through a ``C × C`` channel mix of the whole image; this lets it say *where*. The
    projection to ``γ, β`` starts at zero, so the block starts as the identity and the teacher as without it.

    Args:
        dim: feature channels C.
        prior_dim: prior channels.

    Shapes:
        feature ``(B, C, H, W)``, prior ``(B, C_p, h, w)`` (resized to ``H, W``) → ``(B, C, H, W)``.
    """

    def __init__(self, dim: int, prior_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(prior_dim)
        self.hidden = nn.Conv2d(prior_dim, dim, 3, padding=1)
        self.scale_shift = nn.Conv2d(dim, 2 * dim, 3, padding=1)
        nn.init.zeros_(self.scale_shift.weight)
        nn.init.zeros_(self.scale_shift.bias)

    def forward(self, feature: Tensor, prior: Tensor) -> Tensor:
        prior = F.interpolate(prior, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        scale, shift = self.scale_shift(F.relu(self.hidden(self.norm(prior)))).chunk(2, dim=1)
        return feature * (1 + scale) + shift


class PriorPyramid(nn.Module):
    """FPN over the SKB features, returning only the finest ``levels`` outputs (the ones the teacher reads).

    Lateral 1×1 convolutions to ``dim``, a nearest-neighbour top-down pathway, then a 3×3 convolution per output
    level (as torchvision's ``FeaturePyramidNetwork``, which would also build the coarsest output, unused here:
    a parameter without gradient that ``DDP`` would wait for).

    Shapes:
        ``[(B, C_i, H_i, W_i)]`` fine to coarse → ``levels × (B, dim, H_i, W_i)``.
    """

    def __init__(self, in_channels: Sequence[int], dim: int, levels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(dim, dim, 3, padding=1) for _ in range(levels))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        x = self.lateral[-1](features[-1])
        merged = [x]
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1]):
            x = lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="nearest")
            merged.append(x)
        merged.reverse()
        return [smooth(m) for smooth, m in zip(self.smooth, merged)]


class ResBlock(nn.Module):
    """conv3×3 – ReLU – conv3×3 with a skip: ``(B, C, H, W)`` → same."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FusionModule(nn.Module):
    """Semantic-guided fusion module: two residual blocks, then the prior's fusion (when priors are on): eq. 4's
    Prior Fusion Block (``fusion="attention"``), a per-pixel :class:`SpatialPriorFusion` (``"spatial"``), or the
    spatial one followed by eq. 4 (``"both"``)."""

    def __init__(self, dim: int, prior_dim: int, *, heads: int, use_priors: bool, fusion: str = "attention") -> None:
        super().__init__()
        self.body = nn.Sequential(ResBlock(dim), ResBlock(dim))
        spatial, attention = (use_priors and fusion in ("spatial", "both"),
                              use_priors and fusion in ("attention", "both"))
        self.spatial = SpatialPriorFusion(dim, prior_dim) if spatial else None
        self.fuse = PriorFusionBlock(dim, prior_dim, heads) if attention else None

    def forward(self, x: Tensor, prior: Tensor | None) -> Tensor:
        x = self.body(x)
        if self.spatial is not None:
            x = self.spatial(x, prior)
        return x if self.fuse is None else self.fuse(x, prior)


class SPGRM(nn.Module):
    """The Semantic Priors Guided Reconstruction Model.

    Args:
        prior_channels: channels of the SKB's four features (strides 4, 8, 16, 32).
        dim: the teacher's width.
        heads: attention heads of the Prior Fusion Blocks.
        use_priors: ``False`` for the "w/o SKB priors" ablation.
        fusion: how a prior enters each fusion module: ``"attention"`` (eq. 4), ``"spatial"`` (per pixel,
            :class:`SpatialPriorFusion`) or ``"both"``.
        stride: resolution factor ``s`` of the fusion modules. 1: they run at full resolution. ``s > 1``: the
            head is a 3×3 convolution over the ``s × s``-unshuffled image (``3·s²`` channels), the tail a 3×3
            convolution to ``3·s²`` channels shuffled back into a full-resolution residual. Keeps the parameter
            names of ``stride=1`` (the head's and tail's shapes differ).

    Shapes:
        ``hs (B, 3, H, W)``, ``priors [4 × (B, C_i, H/s_i, W/s_i)]`` → Ĥ_s ``(B, 3, H, W)`` and
        ``[3 × (B, dim, ⌈H/s⌉, ⌈W/s⌉)]`` teacher features (an image that ``s`` does not divide is padded by
        repeating its last row and column, the residual cropped back to ``H × W``).
    """

    num_features = 3

    def __init__(self, prior_channels: Sequence[int], *, dim: int = 32, heads: int = 2, use_priors: bool = True,
                 stride: int = 1, fusion: str = "attention") -> None:
        super().__init__()
        check("dim", dim, kind=int, at_least=1)
        check("stride", stride, kind=int, at_least=1)
        check("fusion", fusion, one_of=("attention", "spatial", "both"))
        self.use_priors = use_priors
        self.stride = stride
        self.fpn = PriorPyramid(prior_channels, dim, self.num_features) if use_priors else None
        self.head = nn.Conv2d(3 * stride ** 2, dim, 3, padding=1)
        self.fusion = nn.ModuleList(FusionModule(dim, dim, heads=heads, use_priors=use_priors, fusion=fusion)
                                    for _ in range(self.num_features))
        self.tail = nn.Conv2d(dim, 3 * stride ** 2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, hs: Tensor, priors: Sequence[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        levels: list[Tensor | None] = [None] * self.num_features
        if self.use_priors:
            if priors is None:
                raise ValueError("SPGRM was built with use_priors=True but got no priors")
            levels = self.fpn(priors)
        x = hs
        h, w = hs.shape[-2:]
        s = self.stride
        if s > 1:
            x = F.pixel_unshuffle(F.pad(x, (0, -w % s, 0, -h % s), mode="replicate"), s)
        x = self.head(x)
        feats = []
        for module, prior in zip(self.fusion, levels):
            x = module(x, prior)
            feats.append(x)
        residual = self.tail(x)
        if s > 1:
            residual = F.pixel_shuffle(residual, s)[..., :h, :w]
        return hs + residual, feats
