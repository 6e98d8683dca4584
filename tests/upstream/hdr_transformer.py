"""Replica of ``HDRTransformer`` (liuzhen03/HDR-Transformer-PyTorch, ``models/hdr_transformer.py``, 97a244bf).

Written for semkt's tests from a reading of upstream; same module tree, parameter/buffer names and shapes,
forward and output. Their scripts build ``HDRTransformer(embed_dim=60, depths=[6, 6, 6], num_heads=[6, 6, 6],
mlp_ratio=2, in_chans=6)`` (img_size 128, window 8): :func:`build` returns exactly that.

- ``forward(x1, x2, x3)``: three ``(B, 6, H, W)`` frames ``[LDR**2.2 / exposure, LDR]`` (short, reference,
  long); ``H, W`` multiples of the window (8). Returns ``sigmoid(conv_last(f2 + res))``, ``(B, 3, H, W)``.
- Shifted blocks keep an ``attn_mask`` buffer computed for 128×128 (it is in the ``state_dict``); other sizes
  recompute the mask on the fly.
- ``lce.conv`` ends with ``LeakyReLU(inplace=True)``, which overwrites the output of ``lce.conv.2``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import BasicLayer, PatchEmbed, PatchUnEmbed, SwinTransformerBlock, trunc_normal_


class LocalContextExtractor(nn.Module):
    """Bottleneck convs, then squeeze-and-excitation channel gating."""

    def __init__(self, dim, reduction=8):
        super().__init__()
        r = dim // reduction
        self.conv = nn.Sequential(
            nn.Conv2d(dim, r, 1, padding=0, bias=True),
            nn.Conv2d(r, r, 3, padding=1, bias=True),
            nn.Conv2d(r, dim, 1, padding=0, bias=True),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(dim, r, bias=False), nn.ReLU(), nn.Linear(r, dim, bias=False), nn.Sigmoid())

    def forward(self, x):
        x = self.conv(x)
        b, c = x.shape[:2]
        gate = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * gate.expand_as(x)


class ContextAwareTransformer(SwinTransformerBlock):
    """(Shifted-)window attention + MLP on tokens, plus a local-context branch on the normalised map."""

    def __init__(self, dim, input_resolution, num_heads, window_size=8, shift_size=0, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__(dim, input_resolution, num_heads, window_size, shift_size, mlp_ratio, qkv_bias, qk_scale,
                         drop, attn_drop, drop_path, act_layer, norm_layer)
        self.lce = LocalContextExtractor(dim)

    def forward(self, x, x_size):
        h, w = x_size
        b, _, c = x.shape
        normed = self.norm1(x)
        local = self.lce(normed.view(b, h, w, c).permute(0, 3, 1, 2)).view(b, c, h * w).permute(0, 2, 1)
        return local + self.attend(x, normed, x_size)


class ContextAwareTransformerBlock(nn.Module):
    """CTB: a BasicLayer on tokens, a dilated 3×3 conv on the map, a residual; returns tokens ``(B, L, C)``."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0, norm_layer=nn.LayerNorm, downsample=None,
                 use_checkpoint=False, img_size=224, patch_size=4, resi_connection="1conv"):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.residual_group = BasicLayer(ContextAwareTransformer, dim, input_resolution, depth, num_heads, window_size,
                                         mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path, norm_layer,
                                         downsample, use_checkpoint)
        if resi_connection != "1conv":
            raise NotImplementedError("the replica covers the default resi_connection='1conv'")
        self.dilated_conv = nn.Conv2d(dim, dim, 3, padding=2, bias=True, dilation=2)
        self.patch_embed = PatchEmbed(img_size, patch_size, 0, dim, None)
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, 0, dim, None)

    def forward(self, x, x_size):
        res = self.patch_unembed(self.residual_group(x, x_size), x_size)
        return self.patch_embed(self.dilated_conv(res)) + x


class SpatialAttentionModule(nn.Module):
    """Sigmoid attention map of a non-reference frame's feature given the reference's."""

    def __init__(self, dim):
        super().__init__()
        self.att1 = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, bias=True)
        self.att2 = nn.Conv2d(dim * 2, dim, 3, padding=1, bias=True)
        self.relu = nn.LeakyReLU()

    def forward(self, x1, x2):
        return torch.sigmoid(self.att2(self.relu(self.att1(torch.cat((x1, x2), 1)))))


class HDRTransformer(nn.Module):
    def __init__(self, img_size=128, patch_size=1, in_chans=6, embed_dim=60, depths=(6, 6, 6), num_heads=(6, 6, 6),
                 window_size=8, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.1, norm_layer=nn.LayerNorm, ape=False, patch_norm=True, use_checkpoint=False,
                 resi_connection="1conv", **kwargs):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        self.conv_f1 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.conv_f2 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.conv_f3 = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.att_module_l = SpatialAttentionModule(embed_dim)
        self.att_module_h = SpatialAttentionModule(embed_dim)
        self.conv_first = nn.Conv2d(embed_dim * 3, embed_dim, 3, 1, 1)
        self.num_layers = len(depths)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_norm = patch_norm
        self.num_features = embed_dim
        self.mlp_ratio = mlp_ratio
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim, embed_dim, norm_layer if patch_norm else None)
        self.patches_resolution = res = self.patch_embed.patches_resolution
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, embed_dim, embed_dim, None)
        if ape:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [v.item() for v in torch.linspace(0, drop_path_rate, sum(depths))]
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            self.layers.append(ContextAwareTransformerBlock(
                embed_dim, (res[0], res[1]), depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias, qk_scale,
                drop_rate, attn_drop_rate, dpr[sum(depths[:i]):sum(depths[:i + 1])], norm_layer, None,
                use_checkpoint, img_size, patch_size, resi_connection))
        self.norm = norm_layer(self.num_features)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.conv_last = nn.Conv2d(embed_dim, 3, 3, 1, 1)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def forward_features(self, x):
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        for layer in self.layers:
            x = layer(x, x_size)
        return self.patch_unembed(self.norm(x), x_size)

    def forward(self, x1, x2, x3):
        f1, f2, f3 = self.conv_f1(x1), self.conv_f2(x2), self.conv_f3(x3)
        f1_att = f1 * self.att_module_h(f1, f2)
        f3_att = f3 * self.att_module_l(f3, f2)
        x = self.conv_first(torch.cat((f1_att, f2, f3_att), dim=1))
        res = self.conv_after_body(self.forward_features(x) + x)
        return torch.sigmoid(self.conv_last(f2 + res))


def build() -> HDRTransformer:
    """The configuration of upstream ``train.py`` / ``test.py``."""
    return HDRTransformer(embed_dim=60, depths=[6, 6, 6], num_heads=[6, 6, 6], mlp_ratio=2, in_chans=6)
