"""Replica of ``SCTNet`` (Zongwei97/SCTNet, ``models/SCTNet.py`` + ``models/SCAB.py``, 56576682).

Written for semkt's tests from a reading of upstream; same module tree, parameter/buffer names and shapes,
forward and output. ``train_sct.py`` builds ``SCTNet(upscale=2, img_size=(72, 72), in_chans=18, window_size=8,
img_range=1., depths=[6, 6, 6, 6], embed_dim=60, num_heads=[6, 6, 6, 6], mlp_ratio=2)`` (``test_sct.py`` adds
``upsampler='pixelshuffledirect'``, which only sets an attribute): :func:`build` returns that.

- ``forward(x1, x2, x3)``: three ``(B, 6, H, W)`` frames ``[LDR**2.2 / exposure, LDR]``; they are concatenated,
  reflect-padded on the bottom/right to a multiple of 8, split again into ``conv1/2/3`` (20 channels each).
- Output ``sigmoid(x[:, :, :H*upscale, :W*upscale])`` with ``upscale=2`` and no pixel shuffle in
  ``upsample``: the crop is a no-op, so when ``H`` or ``W`` is not a multiple of 8 the output keeps the
  padded size. ``(B, 3, H8, W8)``.
- ``layers.i``, ``channel_layers_lm/rm.i``, ``mlps.i`` return tokens ``(B, L, C)``; ``layers.i.conv`` is 4-D.
- ``self.mean`` is a plain tensor attribute (zeros, not a buffer) since ``in_chans != 3``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import BasicLayer, Mlp, PatchEmbed, PatchUnEmbed, SwinTransformerBlock, trunc_normal_


class GSAB(nn.Module):
    """Global spatial attention block (SwinIR's RSTB): tokens in, tokens out."""

    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0, norm_layer=nn.LayerNorm, downsample=None,
                 use_checkpoint=False, img_size=224, patch_size=4, resi_connection="1conv"):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.residual_group = BasicLayer(SwinTransformerBlock, dim, input_resolution, depth, num_heads, window_size,
                                         mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, drop_path, norm_layer,
                                         downsample, use_checkpoint)
        if resi_connection != "1conv":
            raise NotImplementedError("the replica covers the default resi_connection='1conv'")
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(img_size, patch_size, 0, dim, None)
        self.patch_unembed = PatchUnEmbed(img_size, patch_size, 0, dim, None)

    def forward(self, x, x_size):
        return self.patch_embed(self.conv(self.patch_unembed(self.residual_group(x, x_size), x_size))) + x


# ---- SCAB (models/SCAB.py) -------------------------------------------------------------------------------
def _to_3d(x):
    return x.flatten(2).transpose(1, 2)


def _to_4d(x, h, w):
    return x.transpose(1, 2).reshape(x.shape[0], -1, h, w)


class WithBias_LayerNorm(nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        shape = torch.Size((normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.normalized_shape = shape

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class BiasFree_LayerNorm(nn.Module):
    def __init__(self, normalized_shape):
        super().__init__()
        shape = torch.Size((normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape)
        self.weight = nn.Parameter(torch.ones(shape))
        self.normalized_shape = shape

    def forward(self, x):
        return x / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight


class LayerNorm(nn.Module):
    """LayerNorm over the channels of a ``(B, C, H, W)`` map."""

    def __init__(self, dim, LayerNorm_type):
        super().__init__()
        self.body = BiasFree_LayerNorm(dim) if LayerNorm_type == "BiasFree" else WithBias_LayerNorm(dim)

    def forward(self, x):
        h, w = x.shape[-2:]
        return _to_4d(self.body(_to_3d(x)), h, w)


class Mutual_Attention(nn.Module):
    """Channel (transposed) cross-attention: queries from ``x``, keys/values from ``y``."""

    def __init__(self, dim, num_heads, bias):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.k = nn.Conv2d(dim, dim, 1, bias=bias)
        self.v = nn.Conv2d(dim, dim, 1, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x, y):
        b, c, h, w = x.shape
        heads = lambda t: t.reshape(b, self.num_heads, c // self.num_heads, h * w)  # noqa: E731
        q, k, v = heads(self.q(x)), heads(self.k(y)), heads(self.v(y))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class SCAB(nn.Module):
    """Spatial channel attention block: fuses the reference tokens ``x`` with a non-reference frame's ``y``."""

    def __init__(self, dim, num_heads, ffn_expansion_factor=2, bias=False, LayerNorm_type="WithBias"):
        super().__init__()
        self.norm1_x = LayerNorm(dim, LayerNorm_type)
        self.norm1_y = LayerNorm(dim, LayerNorm_type)
        self.attn = Mutual_Attention(dim, num_heads, bias)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = Mlp(dim, int(dim * ffn_expansion_factor), act_layer=nn.GELU, drop=0.0)

    def forward(self, x, y, x_size):
        b, n, c = x.shape
        h, w = x_size
        x = x.permute(0, 2, 1).reshape(b, c, h, w)
        y = y.permute(0, 2, 1).reshape(b, c, h, w)
        fused = _to_3d(x + self.attn(self.norm1_x(x), self.norm1_y(y)))
        return fused + self.ffn(self.norm2(fused))


# ---- SCTNet ---------------------------------------------------------------------------------------------
class UpsampleOneStep(nn.Sequential):
    """Upstream keeps the name but only a 3×3 conv to the output channels (the pixel shuffle is commented out)."""

    def __init__(self, scale, num_feat, num_out_ch, input_resolution=None):
        self.num_feat = num_feat
        self.input_resolution = input_resolution
        super().__init__(nn.Conv2d(num_feat, num_out_ch, 3, 1, 1))


class SCTNet(nn.Module):
    def __init__(self, img_size=64, patch_size=1, in_chans=3, embed_dim=96, depths=(6, 6, 6, 6),
                 num_heads=(6, 6, 6, 6), window_size=7, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.1, norm_layer=nn.LayerNorm, ape=False, patch_norm=True,
                 use_checkpoint=False, upscale=2, img_range=1.0, upsampler="", resi_connection="1conv", **kwargs):
        super().__init__()
        depths, num_heads = list(depths), list(num_heads)
        self.img_range = img_range
        self.mean = (torch.Tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1) if in_chans == 3
                     else torch.zeros(1, 1, 1, 1))
        self.upscale = upscale
        self.upsampler = upsampler
        self.window_size = window_size
        third = embed_dim // 3
        self.conv1 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv3 = nn.Conv2d(in_chans // 3, third, 3, 1, 1)
        self.conv_end = nn.Conv2d(third, embed_dim, 3, 1, 1)
        self.conv_first = Mlp(embed_dim, embed_dim, act_layer=nn.GELU, drop=drop_rate)
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
        self.layers = nn.ModuleList(
            GSAB(embed_dim, (res[0], res[1]), depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias, qk_scale,
                 drop_rate, attn_drop_rate, dpr[sum(depths[:i]):sum(depths[:i + 1])], norm_layer, None,
                 use_checkpoint, img_size, patch_size, resi_connection)
            for i in range(self.num_layers))
        c_heads = [4, 4, 4, 4]
        self.channel_layers_lm = nn.ModuleList(SCAB(third, c_heads[i], 4, False, "WithBias")
                                               for i in range(self.num_layers))
        self.channel_layers_rm = nn.ModuleList(SCAB(third, c_heads[i], 4, False, "WithBias")
                                               for i in range(self.num_layers))
        self.mlps = nn.ModuleList(Mlp(embed_dim, embed_dim, embed_dim, nn.GELU, drop_rate)
                                  for _ in range(self.num_layers))
        self.norm = norm_layer(self.num_features)
        if resi_connection != "1conv":
            raise NotImplementedError("the replica covers the default resi_connection='1conv'")
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = UpsampleOneStep(upscale, embed_dim, 3, (res[0], res[1]))
        self.apply(self._init_weights)
        self.sigmoid = nn.Sigmoid()

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.bias)
            nn.init.ones_(m.weight)

    def check_image_size(self, x):
        h, w = x.shape[-2:]
        ph = (self.window_size - h % self.window_size) % self.window_size
        pw = (self.window_size - w % self.window_size) % self.window_size
        return F.pad(x, (0, pw, 0, ph), "reflect")

    def forward_features(self, x):
        x_size = (x.shape[2], x.shape[3])
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed
        x = self.pos_drop(x)
        t1, t2, t3 = x.chunk(3, dim=2)
        x = self.conv_first(x)
        for layer, layer_lm, layer_rm, mlp in zip(self.layers, self.channel_layers_lm, self.channel_layers_rm,
                                                  self.mlps):
            x = layer(x, x_size)
            u1, u2, u3 = x.chunk(3, dim=2)
            ref = t2 + u2
            x = mlp(torch.cat((layer_lm(ref, t1 + u1, x_size), ref, layer_rm(ref, t3 + u3, x_size)), dim=2))
        return self.patch_unembed(self.norm(x), x_size)

    def forward(self, x1, x2, x3):
        x = torch.cat((x1, x2, x3), dim=1)
        h, w = x.shape[2:]
        x = self.check_image_size(x)
        self.mean = self.mean.type_as(x)
        x = (x - self.mean) * self.img_range
        x1, x2, x3 = x.chunk(3, dim=1)
        x1, x2, x3 = self.conv1(x1), self.conv2(x2), self.conv3(x3)
        x = torch.cat((x1, x2, x3), dim=1)
        x = self.conv_after_body(self.forward_features(x)) + self.conv_end(x2)
        x = self.upsample(x) / self.img_range + self.mean
        return self.sigmoid(x[:, :, :h * self.upscale, :w * self.upscale])


def build() -> SCTNet:
    """The configuration of upstream ``train_sct.py``."""
    return SCTNet(upscale=2, img_size=(72, 72), in_chans=18, window_size=8, img_range=1.0, depths=[6, 6, 6, 6],
                  embed_dim=60, num_heads=[6, 6, 6, 6], mlp_ratio=2)
