"""Adapter for AHDRNet (Yan et al., CVPR 2019): qingsenyangit/AHDRNet ``model.py``, class ``AHDR(args)``.

Default configuration (``script_training.py``): ``nChannel=6, nDenselayer=6, nFeat=64, growthRate=32``;
``examples/ahdr/model.py`` has the same module names and parameter shapes.

Forward: ``forward(x1, x2, x3)``, each ``(B, 6, H, W)`` = ``[LDR, LDR**2.2 / exposure]`` (LDR first; RGB),
short / reference / long. Output: one tensor ``(B, 3, H, W)``, ``sigmoid``: linear HDR in ``[0, 1]`` at the
shortest exposure's scale (``output=None``, ``domain="srgb"``, ``scale=1``, ``negative="error"``).

Hook points (SKAM stages, shallow to deep; all full resolution, 64 channels, 4-D, each fires once):

``conv2``
    ``F_0``: the first feature after the attention-guided merge of the three frames (its input is the
    192-channel concatenation of the attended short/long and the reference features).
``RDB2``
    output of the middle of the three dilated residual dense blocks.
``conv_up``
    the fused feature (global feature fusion + the reference's shallow feature, through one 3×3 conv) that the
    head ``conv3`` turns into the image.

Not used: ``conv1`` is shared by the three frames (fires 3×; ``call=1`` would be the reference); the attention
convs ``att12``/``att32`` give logits, not image features; ``attConv1``/``attConv3`` are never called.
No in-place activation follows any of the three (``self.relu`` is ``LeakyReLU()`` without ``inplace``).
"""
from semkt_plugin.adapter import Adapter, HookPoint

ADAPTER = Adapter(
    name="ahdr",
    hooks=(HookPoint("conv2"), HookPoint("RDB2"), HookPoint("conv_up")),
    output=None,
    domain="srgb",
    scale=1.0,
    negative="error",
    description="AHDRNet (qingsenyangit/AHDRNet, model.py AHDR): sigmoid linear HDR, hooks conv2/RDB2/conv_up",
)
