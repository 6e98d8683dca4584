"""Small helpers shared by the replicas (stand-ins for the few ``timm`` helpers upstream imports)."""
from __future__ import annotations

import collections.abc

import torch
from torch import nn


def to_2tuple(x):
    """``(x, x)`` for a scalar, ``tuple(x)`` for an iterable (timm's ``to_2tuple``)."""
    if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
        return tuple(x)
    return (x, x)


def trunc_normal_(tensor: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2.0, b=2.0)


class DropPath(nn.Module):
    """Stochastic depth per sample; identity in eval mode or at rate 0. No parameters."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """Linear, activation, dropout, linear, dropout (the Swin feed-forward; attribute names as upstream)."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B·nW, ws, ws, C)``, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Swin's SW-MSA mask ``(nW, ws², ws²)``: 0 inside one region, -100 across regions."""
    img = torch.zeros((1, h, w, 1))
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    label = 0
    for hs in cuts:
        for wsl in cuts:
            img[:, hs, wsl, :] = label
            label += 1
    win = window_partition(img, ws).view(-1, ws * ws)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (Swin)."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        wh, ww = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        ys, xs = torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")
        flat = torch.stack((ys.flatten(), xs.flatten()))  # 2, N
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # N, N, 2
        index = (rel[..., 0] + wh - 1) * (2 * ww - 1) + (rel[..., 1] + ww - 1)
        self.register_buffer("relative_position_index", index)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, mask=None):
        bn, n, c = x.shape
        q, k, v = self.qkv(x).view(bn, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bn // nw, nw, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        attn = self.attn_drop(self.softmax(attn))
        x = (attn @ v).transpose(1, 2).reshape(bn, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP on tokens ``(B, H·W, C)`` (SwinIR's block)."""

    def __init__(self, dim, input_resolution, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0, act_layer=nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(input_resolution) <= window_size:
            self.shift_size = 0
            self.window_size = min(input_resolution)
        self.norm1 = norm_layer(dim)
        self.attn = WindowAttention(dim, to_2tuple(self.window_size), num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=drop)
        self.register_buffer("attn_mask", self.calculate_mask(input_resolution) if self.shift_size > 0 else None)

    def calculate_mask(self, x_size):
        return shifted_window_mask(x_size[0], x_size[1], self.window_size, self.shift_size)

    def forward(self, x, x_size):
        return self.attend(x, self.norm1(x), x_size)

    def attend(self, x, normed, x_size):
        """The block on tokens ``x`` whose ``norm1`` is ``normed`` (subclasses reuse ``normed`` elsewhere)."""
        h, w = x_size
        b, _, c = x.shape
        s = self.shift_size
        normed = normed.view(b, h, w, c)
        shifted = torch.roll(normed, shifts=(-s, -s), dims=(1, 2)) if s > 0 else normed
        windows = window_partition(shifted, self.window_size).view(-1, self.window_size ** 2, c)
        # all zeros when unshifted, as upstream
        mask = self.attn_mask if self.input_resolution == x_size else self.calculate_mask(x_size).to(x.device)
        windows = self.attn(windows, mask=mask).view(-1, self.window_size, self.window_size, c)
        shifted = window_reverse(windows, self.window_size, h, w)
        y = torch.roll(shifted, shifts=(s, s), dims=(1, 2)) if s > 0 else shifted
        y = x + self.drop_path(y.reshape(b, h * w, c))
        return y + self.drop_path(self.mlp(self.norm2(y)))


class BasicLayer(nn.Module):
    """A stage of ``depth`` Swin blocks of class ``block``, alternating plain and shifted windows (SwinIR's)."""

    def __init__(self, block, dim, input_resolution, depth, num_heads, window_size, mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0, norm_layer=nn.LayerNorm, downsample=None,
                 use_checkpoint=False):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            block(dim, input_resolution, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2, mlp_ratio,
                  qkv_bias, qk_scale, drop, attn_drop, drop_path[i] if isinstance(drop_path, list) else drop_path,
                  norm_layer=norm_layer)
            for i in range(depth))
        self.downsample = downsample(input_resolution, dim=dim, norm_layer=norm_layer) if downsample else None

    def forward(self, x, x_size):
        for blk in self.blocks:
            x = blk(x, x_size)
        return self.downsample(x) if self.downsample is not None else x


class _PatchGrid(nn.Module):
    """The patch geometry both token converters record (attributes as upstream's, no parameters).

    ``norm_layer`` is accepted because the models pass it to both; only :class:`PatchEmbed` uses it.
    """

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None):
        super().__init__()
        img_size, patch_size = to_2tuple(img_size), to_2tuple(patch_size)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patches_resolution = [img_size[0] // patch_size[0], img_size[1] // patch_size[1]]
        self.num_patches = self.patches_resolution[0] * self.patches_resolution[1]
        self.in_chans = in_chans
        self.embed_dim = embed_dim


class PatchEmbed(_PatchGrid):
    """``(B, C, H, W)`` -> tokens ``(B, H·W, C)``, optional LayerNorm (no convolution: patch size 1)."""

    def __init__(self, img_size=224, patch_size=4, in_chans=3, embed_dim=96, norm_layer=None):
        super().__init__(img_size, patch_size, in_chans, embed_dim)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class PatchUnEmbed(_PatchGrid):
    """Tokens ``(B, H·W, C)`` -> ``(B, C, H, W)``; no parameters."""

    def forward(self, x, x_size):
        b = x.shape[0]
        return x.transpose(1, 2).reshape(b, self.embed_dim, x_size[0], x_size[1])
