"""Adapter for SAFNet (Kong et al., ECCV 2024): ltkong218/SAFNet ``models/SAFNet.py``, class ``SAFNet()``.

Default configuration: ``SAFNet()`` (no arguments; ``eval_SAFNet_siggraph17.py``). Training code is not
released.

Forward: ``forward(img0_c, img1_c, img2_c, scale_factor=0.5, refine=True)``, each ``(B, 6, H, W)`` =
``[LDR**2.2 / exposure, LDR]`` (linear first; RGB), ``img1_c`` the reference. Flow and selection masks are
estimated at ``16·ceil(H·scale_factor/16)`` and resized back, so any ``H, W`` runs; the merge and the
refinement are at full resolution. Output: the tuple ``(img_hdr_m, img_hdr_r)``; ``H_in`` is the refined
``img_hdr_r = clamp(img_hdr_m + res, 0, 1)`` (``output=1``), linear HDR in ``[0, 1]``, no sigmoid
(``domain="srgb"``, ``scale=1``; ``negative="error"`` since the clamp never gives values below zero). The clamp
stops the gradient where ``img_hdr_m + res`` leaves ``[0, 1]``. Keep ``refine=True``: without it the model
returns a single tensor and the refine net (where all three hooks are) does not run.

Hook points (SKAM stages, shallow to deep; all in ``refinenet``, full resolution, 80 channels, 4-D, fire once):

``refinenet.resblock1`` (``kind="pre"``)
    ``[warp(conv0(img0_c)), conv1(img1_c, flows, masks, img_hdr_m), warp(conv2(img2_c))]``: the first
    full-resolution feature in which the three frames are aligned and stacked.
``refinenet.resblock3``
    the middle (dilation 4) of the five residual blocks.
``refinenet.resblock5``
    the fused feature that the head ``refinenet.conv3`` turns into the residual added to ``img_hdr_m``.

Not used: the shared ``encoder.pyramid1..4`` (1/4 to 1/32 of the input at the default ``scale_factor``, three
calls, one per frame) and the shared ``decoder`` (four calls, one per level; returns a 4-tuple of flows and
masks). No in-place activation (all ``PReLU``).
"""
from semkt_plugin.adapter import Adapter, HookPoint

ADAPTER = Adapter(
    name="safnet",
    hooks=(
        HookPoint("refinenet.resblock1", kind="pre"),
        HookPoint("refinenet.resblock3"),
        HookPoint("refinenet.resblock5"),
    ),
    output=1,
    domain="srgb",
    scale=1.0,
    negative="error",
    description="SAFNet (ltkong218/SAFNet): refined HDR clamped to [0, 1] (output 1 of the tuple), "
    "hooks in refinenet",
)
