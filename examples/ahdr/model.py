"""AHDRNet (Yan et al., CVPR 2019): attention-guided merging of three exposures, dilated residual dense blocks.

Module names and parameter shapes follow the upstream ``AHDR(args)`` (qingsenyangit/AHDRNet, ``model.py``) so
its checkpoints load here; ``attConv1`` / ``attConv3`` exist upstream but are never called, and are kept for
that reason only.
"""
from __future__ import annotations

from argparse import Namespace

import torch
from torch import Tensor, nn


class DilatedDense(nn.Module):
    """One dense layer: 3×3 conv with dilation 2 and ReLU, its output appended to the input channels."""

    def __init__(self, in_channels: int, growth_rate: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth_rate, kernel_size=3, padding=2, dilation=2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C + growth_rate, H, W)."""
        return torch.cat([x, torch.relu(self.conv(x))], dim=1)


class DRDB(nn.Module):
    """Dilated residual dense block: ``n_layers`` dense layers, 1×1 fusion back to ``channels``, residual."""

    def __init__(self, channels: int, n_layers: int, growth_rate: int):
        super().__init__()
        self.dense_layers = nn.Sequential(
            *(DilatedDense(channels + i * growth_rate, growth_rate) for i in range(n_layers))
        )
        self.conv_1x1 = nn.Conv2d(channels + n_layers * growth_rate, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, H, W)."""
        return x + self.conv_1x1(self.dense_layers(x))


def _conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)


class AHDR(nn.Module):
    """AHDRNet.

    Args:
        args: namespace with ``nChannel`` (6: LDR and its linearisation), ``nDenselayer`` (6), ``nFeat`` (64)
            and ``growthRate`` (32), as upstream.

    ``forward(x1, x2, x3)``: short, reference, long frames, each (B, 6, H, W) = ``concat(LDR, LDR**2.2 / t)``;
    returns linear HDR (B, 3, H, W) in [0, 1].
    """

    def __init__(self, args: Namespace):
        super().__init__()
        c, f = args.nChannel, args.nFeat
        self.args = args
        self.conv1 = _conv3(c, f)  # shared by the three frames
        self.conv2 = _conv3(3 * f, f)
        self.att11 = _conv3(2 * f, 2 * f)
        self.att12 = _conv3(2 * f, f)
        self.attConv1 = _conv3(f, f)
        self.att31 = _conv3(2 * f, 2 * f)
        self.att32 = _conv3(2 * f, f)
        self.attConv3 = _conv3(f, f)
        self.RDB1 = DRDB(f, args.nDenselayer, args.growthRate)
        self.RDB2 = DRDB(f, args.nDenselayer, args.growthRate)
        self.RDB3 = DRDB(f, args.nDenselayer, args.growthRate)
        self.GFF_1x1 = nn.Conv2d(3 * f, f, kernel_size=1)
        self.GFF_3x3 = _conv3(f, f)
        self.conv_up = _conv3(f, f)
        self.conv3 = _conv3(f, 3)
        self.relu = nn.LeakyReLU()

    def _attend(self, feat: Tensor, ref: Tensor, hidden: nn.Conv2d, logits: nn.Conv2d) -> Tensor:
        """Scale a non-reference frame's features by an attention map computed with the reference's."""
        att = logits(self.relu(hidden(torch.cat([feat, ref], dim=1))))
        return feat * torch.sigmoid(att)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        f1, f2, f3 = (self.relu(self.conv1(x)) for x in (x1, x2, x3))
        f1 = self._attend(f1, f2, self.att11, self.att12)
        f3 = self._attend(f3, f2, self.att31, self.att32)
        f0 = self.conv2(torch.cat([f1, f2, f3], dim=1))
        r1 = self.RDB1(f0)
        r2 = self.RDB2(r1)
        r3 = self.RDB3(r2)
        fused = self.GFF_3x3(self.GFF_1x1(torch.cat([r1, r2, r3], dim=1))) + f2  # global residual from the reference
        return torch.sigmoid(self.conv3(self.conv_up(fused)))
