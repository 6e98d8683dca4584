"""Adapter for HDR-Transformer (Liu et al., ECCV 2022): liuzhen03/HDR-Transformer-PyTorch
``models/hdr_transformer.py``, class ``HDRTransformer``.

Default configuration (``train.py``/``test.py``): ``HDRTransformer(embed_dim=60, depths=[6, 6, 6],
num_heads=[6, 6, 6], mlp_ratio=2, in_chans=6)`` (``img_size=128``, ``window_size=8``).

Forward: ``forward(x1, x2, x3)``, each ``(B, 6, H, W)`` = ``[LDR**2.2 / exposure, LDR]`` (linear first; read
with cv2, so BGR), ``H, W`` multiples of 8. Output: one tensor ``(B, 3, H, W)``, ``sigmoid``: linear HDR in
``[0, 1]`` (``output=None``, ``domain="srgb"``, ``scale=1``, ``negative="error"``).

Hook points (SKAM stages, shallow to deep; all full resolution, 60 channels, 4-D, each fires once):

``conv_first``
    the merged shallow feature: the conv over ``[f1·att_h, f2, f3·att_l]`` (180 channels in).
``layers.1.dilated_conv``
    the dilated 3×3 conv at the end of the second of the three context-aware transformer blocks; the blocks
    themselves (``layers.i``) return tokens ``(B, H·W, 60)``, this conv is the same stage as a map.
``conv_last`` (``kind="pre"``)
    the fused feature ``f2 + conv_after_body(...)`` that the head ``conv_last`` turns into the image.

In-place activations: only inside ``layers.i.residual_group.blocks.j.lce.conv`` (``LeakyReLU(inplace=True)``
after ``lce.conv.2``); none follows the three hook points.
"""
from semkt_plugin.adapter import Adapter, HookPoint

ADAPTER = Adapter(
    name="hdr_transformer",
    hooks=(HookPoint("conv_first"), HookPoint("layers.1.dilated_conv"), HookPoint("conv_last", kind="pre")),
    output=None,
    domain="srgb",
    scale=1.0,
    negative="error",
    description="HDR-Transformer (liuzhen03/HDR-Transformer-PyTorch): sigmoid linear HDR, "
    "hooks conv_first/layers.1.dilated_conv/pre conv_last",
)
