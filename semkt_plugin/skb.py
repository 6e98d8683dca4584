"""Semantic Knowledge Bank (SKB): a frozen FastSAM / YOLOv8-seg network giving features and region maps.

The paper (§3.2) uses FastSAM as the SKB.  FastSAM-s / -x are class-agnostic
YOLOv8s-seg / YOLOv8x-seg networks, so any ultralytics YOLOv8-seg checkpoint
works here.  Its layer layout (identical for the n/s/m/l/x scales)::

    0 Conv  /2   1 Conv  /4   2 C2f  /4          <- backbone, stride 4
    3 Conv  /8   4 C2f   /8   5 Conv /16  6 C2f /16   7 Conv /32  8 C2f /32   9 SPPF /32
    10..15 top-down neck  -> 15 C2f /8           <- inputs of the Segment head
    16..21 bottom-up neck -> 18 C2f /16, 21 C2f /32
    22 Segment head (box / class / mask-coefficient branches + a stride-4 prototype branch)

Features ``p_f``: layers 2, 15, 18, 21, at strides 4, 8, 16, 32.  The paper takes
"the output features before the representation head": 15, 18 and 21 are exactly
what the Segment head reads, and 2 adds the stride-4 level (the prototype
masks' resolution), as SAM-CD does with FastSAM.  The paper's formula
``p_f^i ∈ R^{C_i × H/2^{4-i} × W/2^{4-i}}`` for i = 0..3 would give strides
16, 8, 4, 2, finer than anything the head sees (stride 2 is a single conv of
the RGB input); read as i = 1..4 it gives 8, 4, 2, 1.  Neither matches the
network, so we take the four scales a YOLOv8 FPN actually produces, (4, 8, 16, 32),
which an FPN fusing them (§3.2) expects.

Regions ``p_m``: from the Segment head without NMS.  Anchors are ranked by
class score; among the 300 best, an anchor is dropped when its box overlaps a
better-ranked one by IoU > ``iou_threshold`` ("Fast NMS", one matrix op, a bit
more aggressive than greedy NMS); the first ``num_regions`` survivors with score
> ``score_threshold`` become maps ``sigmoid(coef @ protos)``, upsampled
bilinearly from stride 4 to the input size and zeroed outside their box.  Slots
without a confident anchor are all-zero.  Maps are soft ([0, 1]), sorted by
score, may overlap, and do not cover the whole image; ``regions > 0.5`` gives
binary masks.  Regions are computed without gradient (the selection is discrete
and the paper uses them as fixed weights); features keep their graph so a
caller can use them as a perceptual-loss network.

The head is run branch by branch (``cv2`` box, ``cv3`` class, ``cv4`` mask
coefficients, ``proto``, ``dfl``) rather than through ``Segment.forward``,
whose return value depends on the ultralytics version and on train / eval /
export mode (ultralytics 8.4: a dict of raw outputs in training,
``((decoded, protos), raw)`` in eval, ``(decoded, protos)`` in export).  We also
avoid ``predict()``: it letterboxes, runs under ``torch.inference_mode`` and
fuses Conv+BN in place.

Checkpoints: ultralytics ``.pt`` files (FastSAM-s.pt / -x.pt among them) are
pickled dicts whose ``"model"`` (or, mid-training, ``"ema"``) is the
``SegmentationModel`` itself in half precision, beside ``"train_args"``,
``"date"``, ``"version"`` and the like.  They are loaded by ultralytics'
``load_checkpoint`` (which also maps the module paths of older ultralytics
releases), with ``weights_only=False``: only load files you trust.  semkt's own format (the
stand-in, see ``scripts/train_skb_standin.py``) is a plain dict
``{"format": "semkt-skb", "arch": yaml name, "nc": int, "state_dict": {...}}``
loaded with ``weights_only=True``.

Importing ultralytics changes the process (env vars, ``torch.save``, printing
options, cv2 threads, warning filters, logger levels); ``load_skb`` undoes those
changes, see :func:`ultralytics_sandbox`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pretrained import MissingWeights
from .validation import check

FEATURE_LAYERS = (2, 15, 18, 21)
STRIDES = (4, 8, 16, 32)
PAD_VALUE = 114 / 255  # ultralytics' letterbox grey: what the network saw at the borders in training
MAX_CANDIDATES = 300  # anchors considered for regions, ultralytics' max_det
STANDIN = Path(__file__).parent / "assets" / "skb_standin.pt"
ASSET_URL = "https://github.com/ultralytics/assets/releases/download/v8.4.0/{name}"
OFFLINE = 'skb_weights="standin"'  # load_skb("standin"): no download
_ENV_DEFAULTS = {"YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}
_LOGGERS_TOUCHED = ("sentry_sdk", "coremltools")  # ultralytics sets their levels on import


class SKBOutput(NamedTuple):
    """features: 4 maps (B, C_i, ceil(H/s), ceil(W/s)), s = 4, 8, 16, 32; regions: (B, N, H, W) in [0, 1]."""

    features: list[Tensor]
    regions: Tensor


@contextlib.contextmanager
def ultralytics_sandbox() -> Iterator[None]:
    """Import / use ultralytics inside this block; the process is put back as it was on exit.

    Sets ``YOLO_OFFLINE=true``, ``YOLO_AUTOINSTALL=false``, ``YOLO_VERBOSE=false`` unless
    the user set them.  Restores: every environment variable (ultralytics sets
    ``OMP_NUM_THREADS``, ``NUMEXPR_MAX_THREADS``, ``TF_CPP_MIN_LOG_LEVEL``,
    ``TORCH_CPP_LOG_LEVEL``, ``KINETO_LOG_LEVEL``), ``torch.save`` (replaced by a
    retrying wrapper), torch intra-op threads (its ``select_device`` resets them),
    torch and numpy print options, cv2's thread count and ``imread/imwrite/imshow``
    (patched on Windows), ``warnings.filters`` and the levels of the ``sentry_sdk`` and
    ``coremltools`` loggers.  Not restored: the ``ultralytics`` logger (its own
    namespace) and the settings file ultralytics creates on first import
    (``~/.config/Ultralytics/settings.json``; set ``YOLO_CONFIG_DIR`` to move it).
    """
    import cv2  # ultralytics imports it anyway; needed to read its state first

    env = dict(os.environ)
    torch_save, threads = torch.save, torch.get_num_threads()
    torch_print = {
        k: getattr(torch._tensor_str.PRINT_OPTS, k)
        for k in ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")
    }
    np_print = np.get_printoptions()
    cv2_threads, cv2_io = cv2.getNumThreads(), (cv2.imread, cv2.imwrite, cv2.imshow)
    filters = list(warnings.filters)
    levels = {name: logging.getLogger(name).level for name in _LOGGERS_TOUCHED}
    for k, v in _ENV_DEFAULTS.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k in set(os.environ) - set(env):
            del os.environ[k]
        os.environ.update(env)
        torch.save = torch_save
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.set_printoptions(**torch_print)
        np.set_printoptions(**np_print)
        cv2.setNumThreads(cv2_threads)
        cv2.imread, cv2.imwrite, cv2.imshow = cv2_io
        warnings.filters[:] = filters
        warnings._filters_mutated()  # drop the per-module "already warned" caches built on the old filters
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _missing(weights: str | Path, why: str) -> MissingWeights:
    name = Path(str(weights)).name if str(weights).lower().startswith("fastsam") else "FastSAM-s.pt"
    return MissingWeights(
        f"SKB weights {str(weights)!r}: {why}. Fix: download {name} from {ASSET_URL.format(name=name)} "
        f"(or FastSAM-x.pt, or any ultralytics YOLOv8-seg .pt) and pass its path (skb_weights=PATH).", OFFLINE)


def skb_weights_file(weights: str | Path | None) -> Path | None:
    """The local file that ``weights`` names, downloaded first if it is a missing ultralytics asset (see
    :func:`load_skb`); ``None`` (random init) stays ``None``.

    A bare name (``"FastSAM-s.pt"``) is looked for in the working directory, then in ultralytics' weights directory
    (its ``weights_dir`` setting), where ultralytics otherwise downloads its release asset of that name.

    Raises:
        MissingWeights: no such file and, for a bare name, no such asset or the download failed (offline).
    """
    if weights is None:
        return None
    if str(weights) == "standin":
        if not STANDIN.is_file():
            raise FileNotFoundError(
                f"the stand-in weights {STANDIN} are missing; rebuild them with scripts/train_skb_standin.py"
            )
        return STANDIN
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if str(weights) != path.name:  # a path, not a bare asset name: never download
        raise _missing(weights, f"no such file {path.resolve()}")
    with ultralytics_sandbox():
        from ultralytics.utils import SETTINGS
        from ultralytics.utils.downloads import attempt_download_asset

        # ultralytics would download into the working directory, where a run started elsewhere never finds it
        cached = Path(SETTINGS["weights_dir"]) / path.name
        try:
            found = Path(attempt_download_asset(cached))
        except OSError as e:  # offline: ultralytics' ConnectionError after one attempt (YOLO_OFFLINE, see sandbox)
            raise _missing(weights, f"not in {Path.cwd()} nor {cached.parent}, and the download failed "
                                    f"({type(e).__name__}: {e})") from e
    if not found.is_file():
        raise _missing(weights, f"not in {Path.cwd()} nor {cached.parent}, and ultralytics found no release "
                                "asset of that name (a typo, or offline?)")
    return found


def _build(arch: str, nc: int) -> nn.Module:
    from ultralytics.nn.tasks import SegmentationModel

    return SegmentationModel(arch, nc=nc, verbose=False)


def _check_same_trunk(net: nn.Module, arch: str) -> None:
    """Raise unless ``net``'s backbone + neck (layers 0..21) has the shapes of ``arch``; the head may differ."""
    ref = _build(arch, nc=1).state_dict()
    got = net.state_dict()
    trunk = lambda sd: {k: v.shape for k, v in sd.items() if int(k.split(".")[1]) < FEATURE_LAYERS[-1] + 1}  # noqa: E731
    a, b = trunk(ref), trunk(got)
    if a != b:
        diff = sorted(set(a.items()) ^ set(b.items()))[:3]
        raise ValueError(
            f"checkpoint backbone/neck does not match arch={arch!r} (first differences: {diff}); pass arch=None"
        )


def _load_net(weights: str | Path | None, arch: str | None) -> nn.Module:
    """Build or load the ultralytics SegmentationModel; see :func:`load_skb`."""
    if weights is None:
        if arch is None:
            raise ValueError(
                "load_skb needs weights (a .pt path, 'standin', a FastSAM name) or arch=<yaml> for random init"
            )
        return _build(arch, nc=1)
    path = skb_weights_file(weights)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a full ultralytics checkpoint (pickled modules): trusted files only
        from ultralytics.nn.tasks import load_checkpoint

        # an absolute path: ultralytics re-downloads a corrupt file that it takes for a bare asset name
        net, _ = load_checkpoint(str(path.resolve()), inplace=False)  # inplace=True would make SiLU in-place
        if arch is not None:
            _check_same_trunk(net, arch)
        return net
    if isinstance(obj, dict) and obj.get("format") == "semkt-skb":
        arch, nc, state = obj["arch"] if arch is None else arch, obj["nc"], obj["state_dict"]
    elif isinstance(obj, dict) and all(isinstance(v, Tensor) for v in obj.values()):
        if arch is None:
            raise ValueError(
                f"{path} is a bare state_dict; pass arch='yolov8s-seg.yaml' (or the yaml it was trained with)"
            )
        cls_bias = obj.get("model.22.cv3.0.2.bias")  # the class-score conv: its width is nc
        nc, state = (1 if cls_bias is None else cls_bias.shape[0]), obj
    else:
        raise ValueError(f"{path} is neither an ultralytics checkpoint, a semkt-skb dict nor a state_dict")
    net = _build(arch, nc)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(B, K, 4), (B, K, 4) xyxy -> (B, K, K) IoU."""
    lt = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    rb = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda t: (t[..., 2:] - t[..., :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, :, None] + area(b)[:, None, :] - inter + 1e-9)


def _anchors(feats: list[Tensor], strides: Tensor) -> tuple[Tensor, Tensor]:
    """Anchor centres (A, 2) in pixels (x, y) and their strides (A,), level by level, row-major."""
    centres, steps = [], []
    for f, s in zip(feats, strides.tolist()):
        h, w = f.shape[-2:]
        y, x = torch.meshgrid(torch.arange(h, device=f.device), torch.arange(w, device=f.device), indexing="ij")
        centres.append((torch.stack((x, y), -1).reshape(-1, 2) + 0.5) * s)
        steps.append(torch.full((h * w,), float(s), device=f.device))
    return torch.cat(centres), torch.cat(steps)


def fold_batch_norms(net: nn.Module) -> None:
    """Fold every ultralytics ``Conv``'s BatchNorm into its convolution, in place: a frozen BatchNorm in eval mode
    is a per-channel scale and shift, so ``bn(conv(x))`` is one convolution, the same up to rounding (one kernel
    and one pass over the map fewer per layer). The BatchNorm becomes ``nn.Identity``, so ``forward`` is unchanged.
    """
    for m in net.modules():
        conv, bn = getattr(m, "conv", None), getattr(m, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            with torch.no_grad():
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
                fused.to(conv.weight)
                fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
                fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
            m.conv, m.bn = fused, nn.Identity()


class SemanticKnowledgeBank(nn.Module):
    """Frozen YOLOv8-seg / FastSAM network: ``x`` (B, 3, H, W) RGB in [0, 1] -> :class:`SKBOutput`.

    Build it with :func:`load_skb`.  Parameters never train and the module stays in
    eval mode whatever its parent does; gradients still flow to the input.

    Attributes:
        channels: C_i of the 4 features.
        strides: (4, 8, 16, 32).
        num_regions: N, channels of ``regions``.
        score_threshold: minimum class score of an anchor to become a region.
        iou_threshold: box IoU above which a lower-scored anchor is a duplicate.
    """

    def __init__(self, net: nn.Module, num_regions: int = 16, score_threshold: float = 0.25,
                 iou_threshold: float = 0.7):
        super().__init__()
        layers = net.model
        head = layers[-1]
        if (not all(hasattr(head, a) for a in ("cv2", "cv3", "cv4", "proto", "dfl"))
                or list(head.f) != list(FEATURE_LAYERS[1:])):
            raise TypeError(
                f"SKB needs a YOLOv8-seg / FastSAM layout (Segment head reading layers {FEATURE_LAYERS[1:]}); "
                f"got {type(head).__name__} reading {getattr(head, 'f', '?')}"
            )
        check("num_regions", num_regions, kind=int, at_least=1)
        fold_batch_norms(layers)
        self.layers = layers
        self.num_regions, self.score_threshold, self.iou_threshold = num_regions, score_threshold, iou_threshold
        self.strides = STRIDES
        self._keep = set(FEATURE_LAYERS) | {
            j for m in layers for j in ([m.f] if isinstance(m.f, int) else m.f) if j != -1
        }
        self.requires_grad_(False)
        self.train(False)
        with torch.no_grad():
            probe = self.features(torch.zeros(1, 3, 64, 64))
        got = tuple(64 // f.shape[-1] for f in probe)
        if got != STRIDES:
            raise TypeError(
                f"SKB layers {FEATURE_LAYERS} have strides {got}, expected {STRIDES}: not a YOLOv8-seg layout"
            )
        self.channels = tuple(f.shape[1] for f in probe)

    def train(self, mode: bool = True) -> SemanticKnowledgeBank:
        """Ignore ``mode``: the SKB is frozen, BatchNorm must keep its running statistics."""
        return super().train(False)

    def _trunk(self, x: Tensor) -> dict[int, Tensor]:
        """Run layers 0..21 (our own loop over ultralytics' ``.f`` wiring) on padded ``x``."""
        out: dict[int, Tensor] = {}
        for m in self.layers[: FEATURE_LAYERS[-1] + 1]:
            if m.f != -1:
                x = out[m.f] if isinstance(m.f, int) else [x if j == -1 else out[j] for j in m.f]
            x = m(x)
            if m.i in self._keep:
                out[m.i] = x
        return out

    @staticmethod
    def _pad(x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SKB input must be (B, 3, H, W) RGB in [0, 1], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        return F.pad(x, (0, -w % 32, 0, -h % 32), value=PAD_VALUE)

    def _run(self, x: Tensor) -> tuple[list[Tensor], dict[int, Tensor]]:
        """(B, 3, H, W) -> (cropped features in float32, all kept layer outputs of the padded input, in the
        network's dtype)."""
        h, w = x.shape[-2:]
        out = self._trunk(self._pad(x.to(next(self.parameters()).dtype)))
        return [out[i][..., : math.ceil(h / s), : math.ceil(w / s)].float()
                for i, s in zip(FEATURE_LAYERS, STRIDES)], out

    def features(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> 4 maps (B, C_i, ceil(H/s), ceil(W/s)), s = 4, 8, 16, 32; differentiable w.r.t. x."""
        return self._run(x)[0]

    def forward(self, x: Tensor) -> SKBOutput:
        """(B, 3, H, W) RGB in [0, 1] -> SKBOutput(features, regions (B, N, H, W), no gradient)."""
        features, out = self._run(x)
        with torch.no_grad():
            regions = self._regions([out[i] for i in FEATURE_LAYERS[1:]])[..., : x.shape[-2], : x.shape[-1]].float()
        return SKBOutput(features, regions)

    def _regions(self, feats: list[Tensor]) -> Tensor:
        """Neck maps (strides 8, 16, 32) of a padded (Hp, Wp) input -> (B, N, Hp, Wp) region maps."""
        head = self.head
        b = feats[0].shape[0]
        flat = lambda branch: torch.cat([branch[i](f).flatten(2) for i, f in enumerate(feats)], 2)  # noqa: E731
        scores = flat(head.cv3).sigmoid().amax(1)  # (B, A): class-agnostic objectness
        coef = flat(head.cv4)  # (B, nm, A)
        ltrb = head.dfl(flat(head.cv2))  # (B, 4, A) distances in units of the level's stride
        centres, steps = _anchors(feats, head.stride)
        boxes = torch.cat((centres.T - ltrb[:, :2] * steps, centres.T + ltrb[:, 2:] * steps), 1)  # (B, 4, A) xyxy
        protos = head.proto(feats[0])  # (B, nm, Hp/4, Wp/4)

        k = min(MAX_CANDIDATES, scores.shape[1])
        top, idx = scores.topk(k, dim=1)  # sorted, best first
        cand = boxes.gather(2, idx[:, None].expand(-1, 4, -1)).transpose(1, 2)  # (B, K, 4)
        duplicate = (_box_iou(cand, cand).triu(1).amax(1) > self.iou_threshold)  # overlaps a better-ranked box
        keep = ~duplicate & (top > self.score_threshold)
        rank = torch.arange(k, device=top.device).expand(b, -1)
        order = torch.where(keep, rank, rank + k).argsort(1)[:, : self.num_regions]  # kept first, by score
        valid = keep.gather(1, order)  # (B, n), n = min(N, K)
        sel = idx.gather(1, order)
        sel_coef = coef.gather(2, sel[:, None].expand(-1, coef.shape[1], -1))  # (B, nm, n)
        sel_box = cand.gather(1, order[..., None].expand(-1, -1, 4))  # (B, n, 4)

        hp, wp = protos.shape[-2] * 4, protos.shape[-1] * 4
        masks = torch.einsum("bcn,bchw->bnhw", sel_coef, protos).sigmoid()
        masks = F.interpolate(masks, size=(hp, wp), mode="bilinear", align_corners=False)
        ys = torch.arange(hp, device=masks.device, dtype=masks.dtype)[:, None] + 0.5
        xs = torch.arange(wp, device=masks.device, dtype=masks.dtype)[None, :] + 0.5
        x1, y1, x2, y2 = (sel_box[..., i, None, None] for i in range(4))
        inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)  # prototypes are only meaningful in the box
        masks = masks * inside * valid[..., None, None]
        if masks.shape[1] < self.num_regions:
            masks = F.pad(masks, (0, 0, 0, 0, 0, self.num_regions - masks.shape[1]))
        return masks

    @property
    def head(self) -> nn.Module:
        return self.layers[-1]


def load_skb(
    weights: str | Path | None = "FastSAM-s.pt",
    arch: str | None = None,
    num_regions: int = 16,
    device: torch.device | str | None = None,
) -> SemanticKnowledgeBank:
    """Load a frozen SKB.

    Args:
        weights: one of
            - a local file: an ultralytics checkpoint (FastSAM-s.pt / FastSAM-x.pt or any
              YOLOv8-seg ``.pt``; a pickle, loaded with ``weights_only=False``: trusted files
              only), a ``semkt-skb`` dict, or a bare state_dict (needs ``arch``).  Never
              touches the network.
            - ``"standin"``: semkt's bundled offline stand-in (YOLOv8n-seg fine-tuned to
              segment everything on real HDR views), ``semkt_plugin/assets/skb_standin.pt``.
            - a bare name such as ``"FastSAM-s.pt"`` not in the working directory: looked for
              in ultralytics' weights dir, else ultralytics downloads its release asset there
              (needs internet).
            - ``None`` with ``arch``: random initialisation (tests).
        arch: ultralytics yaml (e.g. ``"yolov8s-seg.yaml"``) to build the network for a
            state_dict or random init; with an ultralytics checkpoint it is only
            checked against the checkpoint's backbone + neck.
        num_regions: N, number of region maps.
        device: where to put the network (default CPU).

    Returns:
        SemanticKnowledgeBank in eval mode with frozen parameters.

    Raises:
        MissingWeights: a file that does not exist, or a bare name neither found nor downloaded.
    """
    with ultralytics_sandbox():
        net = _load_net(weights, arch).float().eval()
        skb = SemanticKnowledgeBank(net, num_regions=num_regions)
    return skb.to(device) if device is not None else skb
