"""SPGRM, the teacher (§3.2): refines T(H_in) in the SDR domain with the SKB's multi-scale features.

Layout: a 3×3 head; an FPN maps the four SKB features to the teacher's width; three semantic-guided
fusion modules, each two residual blocks and a Prior Fusion Block that takes FPN level ``k`` (strides 4, 8, 16 for
modules 1–3: fine detail first, wider context deeper); a 3×3 tail predicts a residual, so an untrained teacher
starts as the identity on T(H_in). The three module outputs are the teacher features F_T^k that SKAM aligns with.
With ``use_priors=False`` the Prior Fusion Blocks are skipped: the paper's "w/o FastSAM" ablation, a plain
second-stage enhancer of the same depth.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel of a ``(B, C, H, W)`` map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


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
        feature ``(B, C, H, W)``, prior ``(B, C_p, h, w)`` (resized to ``H, W``) → ``(B, C, H, W)``.
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

    def forward(self, feature: Tensor, prior: Tensor) -> Tensor:
        h, w = feature.shape[-2:]
        prior = F.interpolate(prior, size=(h, w), mode="bilinear", align_corners=False)
        q = self.q(self.norm_p(prior))
        k, v = self.kv(self.norm_f(feature)).chunk(2, dim=1)
        q, k, v = (rearrange(t, "b (n c) h w -> b n c (h w)", n=self.heads) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)  # cosine similarity keeps the softmax scale sane
        # eq. 4 is Restormer's V·softmax(K·Q/γ): row i holds query channel i's weights over the key channels j,
        # and those weights pick value channels j, which come from the same feature as the keys
        attn = (q @ k.transpose(-2, -1) * self.gamma).softmax(dim=-1)  # (B, heads, c_q, c_k)
        out = rearrange(attn @ v, "b n c (h w) -> b (n c) h w", h=h, w=w)
        return feature + self.out(out)


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
    """Semantic-guided fusion module: two residual blocks, then a Prior Fusion Block (when priors are on)."""

    def __init__(self, dim: int, prior_dim: int, heads: int, use_priors: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(ResBlock(dim), ResBlock(dim))
        self.fuse = PriorFusionBlock(dim, prior_dim, heads) if use_priors else None

    def forward(self, x: Tensor, prior: Tensor | None) -> Tensor:
        x = self.body(x)
        return x if self.fuse is None else self.fuse(x, prior)


class SPGRM(nn.Module):
    """The Semantic Priors Guided Reconstruction Model.

    Args:
        prior_channels: channels of the SKB's four features (strides 4, 8, 16, 32).
        dim: the teacher's width.
        heads: attention heads of the Prior Fusion Blocks.
        use_priors: ``False`` for the "w/o SKB priors" ablation.

    Shapes:
        ``hs (B, 3, H, W)``, ``priors [4 × (B, C_i, H/s_i, W/s_i)]`` → Ĥ_s ``(B, 3, H, W)`` and
        ``[3 × (B, dim, H, W)]`` teacher features.
    """

    num_features = 3

    def __init__(self, prior_channels: Sequence[int], dim: int = 32, heads: int = 2, use_priors: bool = True) -> None:
        super().__init__()
        self.use_priors = use_priors
        self.fpn = PriorPyramid(prior_channels, dim, self.num_features) if use_priors else None
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.fusion = nn.ModuleList(FusionModule(dim, dim, heads, use_priors) for _ in range(self.num_features))
        self.tail = nn.Conv2d(dim, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, hs: Tensor, priors: Sequence[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        levels: list[Tensor | None] = [None] * self.num_features
        if self.use_priors:
            if priors is None:
                raise ValueError("SPGRM was built with use_priors=True but got no priors")
            levels = self.fpn(priors)
        x = self.head(hs)
        feats = []
        for module, prior in zip(self.fusion, levels):
            x = module(x, prior)
            feats.append(x)
        return hs + self.tail(x), feats
