"""Replica of ``TMRNet`` (cszhilu1998/BracketIRE, ``models/syn_model.py`` + ``models/networks.py``, 68427e36).

Written for semkt's tests from a reading of upstream; same module tree, parameter/buffer names and shapes,
forward and output. ``SynModel`` builds ``TMRNet(opt)`` (``mid_channels=64, max_residue_magnitude=10``).
Upstream loads SPyNet weights from ``./ckpt/spynet/...pth`` when ``opt.isTrain``; this replica never reads a
file (SPyNet is randomly initialised; ``opt`` is accepted and ignored).

- ``forward(lqs)``: ``lqs`` ``(N, T=5, 4, H, W)`` packed RGGB, 10-bit / 1023, frame ``t`` multiplied by
  ``4**(2-t)`` by the caller (``SynModel.set_input``/``forward``); frame 0 is the reference.
- Returns ``conv_last(...)``, ``(N, 4, H, W)`` linear RAW, no output activation; ``/ 16`` is about ``[0, 1]``.
- ``feat_extract`` sees the frames folded into the batch ``(N·T, 64, H, W)``; ``dcn_alignment`` the four
  non-reference frames ``(N·(T-1), 64, H, W)``; ``backbone.backward`` runs once per frame (5 calls),
  ``backbone.backward_rec_{i}`` once each; ``learn_para`` (zeros at init) scales the ``backward_rec`` branch.
- In-place activations: every ``ResidualBlocksWithInputConv.main.0`` and ``ResidualBlockNoBN.conv1`` output
  is overwritten by the in-place (Leaky)ReLU that follows, and so is ``conv_hr``'s (``self.lrelu``,
  ``inplace=True``), which feeds ``conv_last``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.ops as ops
from torch import nn


def make_layer(block, num_blocks, **kwarg):
    return nn.Sequential(*(block(**kwarg) for _ in range(num_blocks)))


def flow_warp(x, flow, interpolation="bilinear", padding_mode="zeros", align_corners=True):
    """Warp ``x`` ``(n, c, h, w)`` by a pixel flow ``(n, h, w, 2)``."""
    _, _, h, w = x.shape
    gy, gx = torch.meshgrid(torch.arange(0, h, device=flow.device, dtype=x.dtype),
                            torch.arange(0, w, device=flow.device, dtype=x.dtype), indexing="ij")
    pos = torch.stack((gx, gy), 2) + flow
    grid = torch.stack((2.0 * pos[..., 0] / max(w - 1, 1) - 1.0, 2.0 * pos[..., 1] / max(h - 1, 1) - 1.0), dim=3)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode=padding_mode, align_corners=align_corners)


class ResidualBlockNoBN(nn.Module):
    def __init__(self, mid_channels=64, res_scale=1):
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        for conv in (self.conv1, self.conv2):  # kaiming, scaled by 0.1 (biases keep PyTorch's default)
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data *= 0.1

    def forward(self, x):
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class ResidualBlocksWithInputConv(nn.Module):
    def __init__(self, in_channels, out_channels=64, num_blocks=30):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            make_layer(ResidualBlockNoBN, num_blocks, mid_channels=out_channels))

    def forward(self, feat):
        return self.main(feat)


class PixelShufflePack(nn.Module):
    def __init__(self, in_channels, out_channels, scale_factor, upsample_kernel):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factor = scale_factor
        self.upsample_kernel = upsample_kernel
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * scale_factor * scale_factor, upsample_kernel,
                                       padding=(upsample_kernel - 1) // 2)
        nn.init.kaiming_normal_(self.upsample_conv.weight, a=0, mode="fan_in")

    def forward(self, x):
        x = self.upsample_conv(x)
        return F.pixel_shuffle(x, self.scale_factor) if self.scale_factor > 1 else x


class DeformableAlignment(nn.Module):
    """Flow-guided modulated deformable conv (BasicVSR++ style): offsets = flow + bounded residue."""

    def __init__(self, in_channels, out_channels, kernel=3, padding=1, deform_groups=8, max_residue_magnitude=10):
        super().__init__()
        self.max_residue_magnitude = max_residue_magnitude
        self.conv_offset = nn.Sequential(
            nn.Conv2d(2 * out_channels + 2, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(out_channels, 27 * deform_groups, 3, 1, 1))
        self.deform_conv = ops.DeformConv2d(in_channels, out_channels, kernel_size=kernel, stride=1, padding=padding,
                                            dilation=1, bias=True, groups=deform_groups)
        nn.init.zeros_(self.conv_offset[-1].weight)

    def forward(self, cur_feat, ref_feat, warped_feat, flow):
        out = self.conv_offset(torch.cat([warped_feat, ref_feat, flow], dim=1))
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), dim=1))
        offset = offset + flow.flip(1).repeat(1, offset.size(1) // 2, 1, 1)
        return self.deform_conv(cur_feat, offset, mask=torch.sigmoid(mask))


class SPyNetBasicModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.basic_module = nn.Sequential(
            nn.Conv2d(8, 32, 7, 1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 7, 1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 7, 1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(32, 16, 7, 1, 3), nn.ReLU(inplace=True),
            nn.Conv2d(16, 2, 7, 1, 3))

    def forward(self, tensor_input):
        return self.basic_module(tensor_input)


class SPyNet(nn.Module):
    """Six-level spatial-pyramid optical flow (no batch norm); inputs are resized to a multiple of 32."""

    def __init__(self):
        super().__init__()
        self.basic_module = nn.ModuleList(SPyNetBasicModule() for _ in range(6))
        self.register_buffer("mean", torch.Tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.Tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def compute_flow(self, ref, supp):
        n, _, h, w = ref.shape
        ref = [(ref - self.mean) / self.std]
        supp = [(supp - self.mean) / self.std]
        for _ in range(5):
            ref.append(F.avg_pool2d(ref[-1], kernel_size=2, stride=2, count_include_pad=False))
            supp.append(F.avg_pool2d(supp[-1], kernel_size=2, stride=2, count_include_pad=False))
        ref, supp = ref[::-1], supp[::-1]
        flow = ref[0].new_zeros(n, 2, h // 32, w // 32)
        for level in range(len(ref)):
            up = flow if level == 0 else F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(supp[level], up.permute(0, 2, 3, 1), padding_mode="border")
            flow = up + self.basic_module[level](torch.cat([ref[level], warped, up], 1))
        return flow

    def forward(self, ref, supp):
        h, w = ref.shape[2:4]
        w_up = w if w % 32 == 0 else 32 * (w // 32 + 1)
        h_up = h if h % 32 == 0 else 32 * (h // 32 + 1)
        ref = F.interpolate(ref, size=(h_up, w_up), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h_up, w_up), mode="bilinear", align_corners=False)
        flow = F.interpolate(self.compute_flow(ref, supp), size=(h, w), mode="bilinear", align_corners=False)
        flow[:, 0] *= float(w) / float(w_up)
        flow[:, 1] *= float(h) / float(h_up)
        return flow


class TMRNet(nn.Module):
    def __init__(self, opt=None, mid_channels=64, max_residue_magnitude=10):
        super().__init__()
        self.mid_channels = mid_channels
        self.spynet = SPyNet()
        self.dcn_alignment = DeformableAlignment(mid_channels, mid_channels, 3, padding=1, deform_groups=8,
                                                 max_residue_magnitude=max_residue_magnitude)
        self.feat_extract = ResidualBlocksWithInputConv(2 * 4, mid_channels, 5)
        self.backbone = nn.ModuleDict()
        self.backbone["backward"] = ResidualBlocksWithInputConv(3 * mid_channels, mid_channels, 16)
        for i in range(5):
            self.backbone[f"backward_rec_{i + 1}"] = ResidualBlocksWithInputConv(3 * mid_channels, mid_channels, 24)
        self.learn_para = nn.Parameter(torch.zeros(1, 5, mid_channels, 1, 1), requires_grad=True)
        self.reconstruction = ResidualBlocksWithInputConv(2 * mid_channels, mid_channels, 5)
        self.skipup1 = PixelShufflePack(4, mid_channels, 1, upsample_kernel=3)
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        self.conv_hr = nn.Conv2d(mid_channels, mid_channels, 3, 1, 1)
        self.conv_last = nn.Conv2d(mid_channels, 4, 3, 1, 1)

    def compute_flow(self, lqs):
        lqs = torch.stack((lqs[:, :, 0], lqs[:, :, 1:3].mean(dim=2), lqs[:, :, 3]), dim=2)  # RGGB -> RGB
        lqs = torch.pow(torch.clamp(lqs, 0, 1), 1 / 2.2)
        n, t, c, h, w = lqs.shape
        oth = lqs[:, 1:].reshape(-1, c, h, w)
        ref = lqs[:, :1].repeat(1, t - 1, 1, 1, 1).reshape(-1, c, h, w)
        flows = self.spynet(ref, oth).view(n, t - 1, 2, h, w)
        return flows, flows

    def burst_propagate(self, feats, module_name, feat_base):
        n, _, h, w = feats["spatial"][0].shape
        prop = feats["spatial"][0].new_zeros(n, self.mid_channels, h, w)
        for idx, cur in enumerate(feats["spatial"]):
            prop = prop + self.backbone[module_name](torch.cat([feat_base, cur, prop], dim=1))
            rec = self.backbone[f"backward_rec_{idx + 1}"](torch.cat([feat_base, cur, prop], dim=1))
            prop = prop + rec * self.learn_para[:, idx]
            feats[module_name].append(prop)
        return feats

    def upsample(self, lqs, feats, base_feat):
        skip = self.skipup1(lqs[:, 0])
        hr = self.reconstruction(torch.cat([base_feat, feats["backward"][-1]], dim=1)) + skip
        return self.conv_last(self.lrelu(self.conv_hr(hr)))

    def forward(self, lqs):
        n, t, c, h, w = lqs.shape
        lqs_flow = lqs.clone()
        view = lqs.view(-1, c, h, w)
        lqs_in = torch.zeros([n * t, 2 * c, h, w], dtype=view.dtype, device=view.device)
        lqs_in[:, 0::2] = view
        lqs_in[:, 1::2] = torch.pow(torch.clamp(view, min=0), 1 / 2.2)
        feats_ = self.feat_extract(lqs_in)
        h, w = feats_.shape[2:]
        feats_ = feats_.view(n, t, -1, h, w)
        _, flows = self.compute_flow(lqs_flow)
        flows = flows.view(-1, 2, h, w)
        ref_feat = feats_[:, :1].repeat(1, t - 1, 1, 1, 1).view(-1, *feats_.shape[-3:])
        oth_feat = feats_[:, 1:].contiguous().view(-1, *feats_.shape[-3:])
        warped = flow_warp(oth_feat, flows.permute(0, 2, 3, 1))
        oth_feat = self.dcn_alignment(oth_feat, ref_feat, warped, flows).view(n, t - 1, -1, h, w)
        ref_feat = ref_feat.view(n, t - 1, -1, h, w)[:, :1]
        feats_ = torch.cat((ref_feat, oth_feat), dim=1)
        feats = {"spatial": [feats_[:, i] for i in range(t)], "backward": []}
        base_feat = feats_[:, 0]
        feats = self.burst_propagate(feats, "backward", base_feat)
        return self.upsample(lqs, feats, base_feat)


def build() -> TMRNet:
    return TMRNet()
