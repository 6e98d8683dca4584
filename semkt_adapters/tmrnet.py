"""Adapter for TMRNet (Zhang et al., BracketIRE, ICLR 2025): cszhilu1998/BracketIRE ``models/syn_model.py``,
class ``TMRNet(opt, mid_channels=64, max_residue_magnitude=10)``. RAW domain.

Default configuration: ``TMRNet(opt)`` as ``SynModel`` builds it. ``opt`` is only read for ``opt.isTrain``, which
loads SPyNet weights from ``./ckpt/spynet/spynet_20210409-c6c1bd09.pth``.

Forward: ``forward(lqs)``, ``lqs`` ``(N, T=5, 4, H, W)``: packed RGGB (channels R, G, G, B), 10-bit / 1023,
frame ``t`` (exposure ``4**t``) multiplied by ``4**(2-t)`` by the caller, so all five are at 16× the shortest
exposure's scale; frame 0 is the reference. Output: one tensor ``(N, 4, H, W)``, packed RGGB linear RAW with no
output activation (``output=None``, ``domain="raw"``, ``bayer="RGGB"``); ``out / 16`` is about ``[0, 1]``
(``scale=16``: the upstream loss is L1 of ``mu(clamp(out / 16, min=0))`` against ``mu(clamp(gt / 16, 0, 1))``),
and values below zero occur, hence ``negative="clamp"``.

Hook points (SKAM stages, shallow to deep; all at the packed resolution, 64 channels, 4-D):

``feat_extract`` (``frames=5, frame=0``)
    per-frame shallow features, the five frames folded into the batch as ``lqs.view(N·T, ...)`` (batch-major);
    frame 0 is the reference. Fires once.
``backbone.backward`` (``call=2``)
    the shared propagation block runs once per frame (5 calls); the third call is the middle of the
    recurrent fusion. (The ``backbone.backward_rec_{i}`` blocks each run once but are scaled by
    ``learn_para``, zeros at init, so at first they do not reach the output.)
``conv_last`` (``kind="pre"``)
    the fused feature ``lrelu(conv_hr(reconstruction(...) + skip))`` that the head ``conv_last`` turns into
    RAW. The in-place ``lrelu`` has already run when the pre-hook fires, and nothing writes it afterwards.

In-place activations: ``LeakyReLU(inplace=True)`` after every ``*.main.0``, ``ReLU(inplace=True)`` after every
``ResidualBlockNoBN.conv1``, and ``self.lrelu`` after ``conv_hr``: do not hook those convs' outputs.
"""
from semkt_plugin.adapter import Adapter, HookPoint

ADAPTER = Adapter(
    name="tmrnet",
    hooks=(
        HookPoint("feat_extract", frames=5, frame=0),
        HookPoint("backbone.backward", call=2),
        HookPoint("conv_last", kind="pre"),
    ),
    output=None,
    domain="raw",
    scale=16.0,
    negative="clamp",
    bayer="RGGB",
    description="TMRNet (cszhilu1998/BracketIRE syn_model.py): packed RGGB RAW, /16 ≈ [0, 1], no activation",
)
