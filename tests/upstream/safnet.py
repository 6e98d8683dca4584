"""Replica of ``SAFNet`` (ltkong218/SAFNet, ``models/SAFNet.py`` + ``utils.py``, 553e72a7).

Written for semkt's tests from a reading of upstream; same module tree, parameter names and shapes, forward
and output. Upstream builds ``SAFNet()`` (no arguments; ``eval_SAFNet_siggraph17.py``); training code is not
released.

- ``forward(img0_c, img1_c, img2_c, scale_factor=0.5, refine=True)``: three ``(B, 6, H, W)`` frames
  ``[LDR**2.2 / exposure, LDR]`` (RGB), ``img1_c`` the reference.
- Flow and masks come from a 4-level pyramid at ``16·ceil(H·scale_factor/16)`` (the frames are resized to it
  when it differs from ``H``); the shared ``encoder`` runs once per frame (3 calls), the shared ``decoder``
  once per level (4 calls, returns a 4-tuple of flows/masks).
- Returns ``(img_hdr_m, img_hdr_r)``: the explicit weighted merge (not clamped) and the refined HDR
  ``clamp(img_hdr_m + res, 0, 1)``, both ``(B, 3, H, W)``; with ``refine=False`` only ``img_hdr_m``.

``SAFNet_S`` (``models/SAFNet_S.py``) is the same network with a smaller refine net (``RefineNetS``: seven plain
convolutions, no ``resblock*``); the file's other classes and the forward are identical.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIV_SIZE = 16
DIV_FLOW = 20.0


def _resize(x, scale_factor):
    return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False,
                         recompute_scale_factor=True)


def warp(img, flow):
    """Backward-warp ``img`` by a pixel flow ``(B, 2, H, W)`` (bilinear, border padding, align_corners)."""
    b, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, -1, h, -1)
    ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, -1, -1, w)
    grid = torch.cat([xs, ys], 1).to(img)
    norm = torch.cat([flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    return F.grid_sample(img, (grid + norm).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _w_low(img):
    return torch.where(img >= 0.5, img - 0.5, torch.zeros_like(img)) / 0.5


def _w_mid(img):
    return torch.where(img >= 0.5, 1.0 - img, img) / 0.5


def _w_high(img):
    return torch.where(img < 0.5, 0.5 - img, torch.zeros_like(img)) / 0.5


def merge_hdr(ldr_imgs, lin_imgs, mask0, mask2):
    """Triangle-weight merge of three exposures, the non-reference weights gated by the selection masks."""
    ref = ldr_imgs[1]
    w_low = _w_low(ref) * mask0
    w_mid = _w_mid(ref) + _w_low(ref) * (1.0 - mask0) + _w_high(ref) * (1.0 - mask2)
    w_high = _w_high(ref) * mask2
    sum_w = torch.zeros_like(ref)
    sum_img = torch.zeros_like(ref)
    for wt, lin in zip((w_low, w_mid, w_high), lin_imgs):
        sum_w = sum_w + wt
        sum_img = sum_img + wt * lin
    return sum_img / (sum_w + 1e-9)


def convrelu(in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, bias=True):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias),
        nn.PReLU(out_channels))


def channel_shuffle(x, groups):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class Encoder(nn.Module):
    """Four stride-2 levels of 40 channels: 1/2, 1/4, 1/8, 1/16 of its input."""

    def __init__(self):
        super().__init__()
        self.pyramid1 = nn.Sequential(convrelu(6, 40, 3, 2, 1), convrelu(40, 40, 3, 1, 1))
        self.pyramid2 = nn.Sequential(convrelu(40, 40, 3, 2, 1), convrelu(40, 40, 3, 1, 1))
        self.pyramid3 = nn.Sequential(convrelu(40, 40, 3, 2, 1), convrelu(40, 40, 3, 1, 1))
        self.pyramid4 = nn.Sequential(convrelu(40, 40, 3, 2, 1), convrelu(40, 40, 3, 1, 1))

    def forward(self, img_c):
        f1 = self.pyramid1(img_c)
        f2 = self.pyramid2(f1)
        f3 = self.pyramid3(f2)
        return f1, f2, f3, self.pyramid4(f3)


class Decoder(nn.Module):
    """One coarse-to-fine step: refines both flows and both masks and doubles their resolution."""

    def __init__(self):
        super().__init__()
        self.conv1 = convrelu(126, 120)
        self.conv2 = convrelu(120, 120, groups=3)
        self.conv3 = convrelu(120, 120, groups=3)
        self.conv4 = convrelu(120, 120, groups=3)
        self.conv5 = convrelu(120, 120)
        self.conv6 = nn.ConvTranspose2d(120, 6, 4, 2, 1, bias=True)

    def forward(self, f0, f1, f2, flow0, flow2, mask0, mask2):
        x = torch.cat([warp(f0, flow0), f1, warp(f2, flow2), flow0, flow2, mask0, mask2], 1)
        x = self.conv1(x)
        x = channel_shuffle(self.conv2(x), 3)
        x = channel_shuffle(self.conv3(x), 3)
        x = channel_shuffle(self.conv4(x), 3)
        x = self.conv6(self.conv5(x))
        return (2.0 * _resize(flow0, 2.0) + x[:, 0:2], 2.0 * _resize(flow2, 2.0) + x[:, 2:4],
                _resize(mask0, 2.0) + x[:, 4:5], _resize(mask2, 2.0) + x[:, 5:6])


class ResBlock(nn.Module):
    def __init__(self, channels, dilation=1, bias=True):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=bias), nn.PReLU(channels))
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=bias)
        self.prelu = nn.PReLU(channels)

    def forward(self, x):
        return self.prelu(x + self.conv2(self.conv1(x)))


class RefineNet(nn.Module):
    """Full-resolution refinement: per-frame features, warped, fused by five dilated residual blocks."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Sequential(convrelu(6, 20), convrelu(20, 20))
        self.conv1 = nn.Sequential(convrelu(6 + 2 + 2 + 1 + 1 + 3, 40), convrelu(40, 40))
        self.conv2 = nn.Sequential(convrelu(6, 20), convrelu(20, 20))
        self.resblock1 = ResBlock(80, 1)
        self.resblock2 = ResBlock(80, 2)
        self.resblock3 = ResBlock(80, 4)
        self.resblock4 = ResBlock(80, 2)
        self.resblock5 = ResBlock(80, 1)
        self.conv3 = nn.Conv2d(80, 3, 3, 1, 1, 1, bias=True)

    def forward(self, img0_c, img1_c, img2_c, flow0, flow2, mask0, mask2, img_hdr_m):
        feat0 = self.conv0(img0_c)
        feat1 = self.conv1(torch.cat([img1_c, flow0 / DIV_FLOW, flow2 / DIV_FLOW, mask0, mask2, img_hdr_m], 1))
        feat2 = self.conv2(img2_c)
        feat = torch.cat([warp(feat0, flow0), feat1, warp(feat2, flow2)], 1)
        for block in (self.resblock1, self.resblock2, self.resblock3, self.resblock4, self.resblock5):
            feat = block(feat)
        return torch.clamp(img_hdr_m + self.conv3(feat), 0, 1)


class SAFNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.refinenet = RefineNet()

    def forward_flow_mask(self, img0_c, img1_c, img2_c, scale_factor=0.5):
        h, w = img1_c.shape[-2:]
        org_size = (int(h), int(w))
        input_size = (int(DIV_SIZE * math.ceil(h * scale_factor / DIV_SIZE)),
                      int(DIV_SIZE * math.ceil(w * scale_factor / DIV_SIZE)))
        if input_size != org_size:
            img0_c, img1_c, img2_c = (F.interpolate(i, size=input_size, mode="bilinear", align_corners=False)
                                      for i in (img0_c, img1_c, img2_c))
        p0, p1, p2 = self.encoder(img0_c), self.encoder(img1_c), self.encoder(img2_c)
        flow0 = torch.zeros_like(p1[3][:, 0:2])
        flow2 = torch.zeros_like(p1[3][:, 0:2])
        mask0 = torch.zeros_like(p1[3][:, 0:1])
        mask2 = torch.zeros_like(p1[3][:, 0:1])
        for level in (3, 2, 1, 0):
            flow0, flow2, mask0, mask2 = self.decoder(p0[level], p1[level], p2[level], flow0, flow2, mask0, mask2)
        if input_size != org_size:
            sh, sw = org_size[0] / input_size[0], org_size[1] / input_size[1]
            flow0 = F.interpolate(flow0, size=org_size, mode="bilinear", align_corners=False)
            flow0[:, 0] *= sw
            flow0[:, 1] *= sh
            flow2 = F.interpolate(flow2, size=org_size, mode="bilinear", align_corners=False)
            flow2[:, 0] *= sw
            flow2[:, 1] *= sh
            mask0 = F.interpolate(mask0, size=org_size, mode="bilinear", align_corners=False)
            mask2 = F.interpolate(mask2, size=org_size, mode="bilinear", align_corners=False)
        return flow0, flow2, torch.sigmoid(mask0), torch.sigmoid(mask2)

    def forward(self, img0_c, img1_c, img2_c, scale_factor=0.5, refine=True):
        flow0, flow2, mask0, mask2 = self.forward_flow_mask(img0_c, img1_c, img2_c, scale_factor=scale_factor)
        img0_w, img2_w = warp(img0_c, flow0), warp(img2_c, flow2)
        img_hdr_m = merge_hdr([img0_w[:, 3:6], img1_c[:, 3:6], img2_w[:, 3:6]],
                              [img0_w[:, 0:3], img1_c[:, 0:3], img2_w[:, 0:3]], mask0, mask2)
        if not refine:
            return img_hdr_m
        return img_hdr_m, self.refinenet(img0_c, img1_c, img2_c, flow0, flow2, mask0, mask2, img_hdr_m)


class RefineNetS(nn.Module):
    """SAFNet-S's refinement (``models/SAFNet_S.py:105-127``): the warped frames, flows, masks and merge through
    seven convolutions at full resolution, 32 channels."""

    def __init__(self):
        super().__init__()
        self.conv1 = convrelu(6 + 6 + 6 + 2 + 2 + 1 + 1 + 3, 32)
        self.conv2 = convrelu(32, 32)
        self.conv3 = convrelu(32, 32, padding=2, dilation=2)
        self.conv4 = convrelu(32, 32, padding=4, dilation=4)
        self.conv5 = convrelu(32, 32, padding=2, dilation=2)
        self.conv6 = convrelu(32, 32)
        self.conv7 = nn.Conv2d(32, 3, 3, 1, 1, 1, bias=True)

    def forward(self, img0_c, img1_c, img2_c, flow0, flow2, mask0, mask2, img_hdr_m):
        feat = self.conv1(torch.cat([warp(img0_c, flow0), img1_c, warp(img2_c, flow2), flow0 / DIV_FLOW,
                                     flow2 / DIV_FLOW, mask0, mask2, img_hdr_m], 1))
        for conv in (self.conv2, self.conv3, self.conv4, self.conv5, self.conv6):
            feat = conv(feat)
        return torch.clamp(img_hdr_m + self.conv7(feat), 0, 1)


class SAFNet_S(SAFNet):
    def __init__(self):
        super().__init__()
        self.refinenet = RefineNetS()


def build() -> SAFNet:
    return SAFNet()
