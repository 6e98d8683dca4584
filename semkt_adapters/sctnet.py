"""Adapter for SCTNet (Tel et al., ICCV 2023): Zongwei97/SCTNet ``models/SCTNet.py``, class ``SCTNet``.

Default configuration (``train_sct.py``): ``SCTNet(upscale=2, img_size=(72, 72), in_chans=18, window_size=8,
img_range=1., depths=[6, 6, 6, 6], embed_dim=60, num_heads=[6, 6, 6, 6], mlp_ratio=2)`` (``test_sct.py`` adds
``upsampler='pixelshuffledirect'``, which changes nothing).

Forward: ``forward(x1, x2, x3)``, each ``(B, 6, H, W)`` = ``[LDR**2.2 / exposure, LDR]`` (linear first; cv2,
BGR). The frames are reflect-padded (bottom/right) to a multiple of 8 inside. Output: one tensor, ``sigmoid``:
linear HDR in ``[0, 1]`` (``output=None``, ``domain="srgb"``, ``scale=1``, ``negative="error"``). Its crop is
``[:H*upscale, :W*upscale]`` with ``upscale=2`` and no upsampling, so it keeps the padded size
``(B, 3, ceil8(H), ceil8(W))``; feed multiples of 8 (the hooked maps are at the padded size too).

Hook points (SKAM stages, shallow to deep; all at the (padded) input resolution, 60 channels, 4-D, each fires
once):

``layers.0.conv``
    the 3×3 conv closing the first global spatial attention block (``layers.i`` itself, the channel
    attention blocks ``channel_layers_lm/rm.i`` and ``mlps.i`` return tokens ``(B, L, C)``).
``layers.2.conv``
    the same conv in the third of the four blocks.
``upsample`` (``kind="pre"``)
    the fused feature ``conv_after_body(...) + conv_end(x2)`` that the head (``upsample.0``, one 3×3 conv)
    turns into the image.

No in-place activation in the default (``resi_connection='1conv'``) model.
"""
from semkt_plugin.adapter import Adapter, HookPoint

ADAPTER = Adapter(
    name="sctnet",
    hooks=(HookPoint("layers.0.conv"), HookPoint("layers.2.conv"), HookPoint("upsample", kind="pre")),
    output=None,
    domain="srgb",
    scale=1.0,
    negative="error",
    description="SCTNet (Zongwei97/SCTNet): sigmoid linear HDR, hooks layers.0.conv/layers.2.conv/pre upsample",
)
