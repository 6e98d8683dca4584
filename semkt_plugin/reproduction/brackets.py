"""Kalantari-like dynamic brackets synthesised from real HDR content (seeded, numpy + OpenCV).

Content: perspective views of 12 CC0 Poly Haven panoramas, shipped as ``semkt_plugin/assets/real/
<panorama>_<k>.hdr`` (192×192, linear, arbitrary radiometric scale; ``assets/real/README.md`` says how they
were made).  The split is by panorama, fixed once and never to be changed (results are only comparable
across runs and papers while it stays put)::

    test        potsdamer_platz, st_fagans_interior
    validation  forest_slope, venice_sunset
    train       adams_place_bridge, dikhololo_night, empty_warehouse_01, immenstadter_horn,
                kiara_1_dawn, lebombo, rooitou_park, studio_small_03

Bracket model (``make_bracket``), from one view and the other views of its split:

1. Crop: the scene is an S×S window (default S = view − 2·MARGIN, centred; a smaller S is placed at random)
   at least MARGIN px inside the view, so camera shake never samples outside the view.
2. Exposure: the radiance is scaled so that the reference frame (exposure 4, stop 2) puts the median
   luminance at mid grey (0.18 linear, jittered by ±0.5 EV), then lowered, by at most PROTECT_STOPS, until
   the 99.9th percentile of the pixels' largest channel sits at 1 in the ground truth.  The ground truth is
   stored, as Kalantari's ``HDRImg.hdr``, at the shortest frame's scale (``ldr ≈ clip(hdr · 2**stop) **
   (1/2.2)``, stops 0 / 2 / 4 in ``exposure.txt``); radiance above 1 (the short frame's white: the top
   0.1 % of pixels, more where the protection runs out, e.g. ~10 % for a studio softbox in view) is clipped
   to 1, so the ground truth stays in [0, 1] and every frame can be explained by it.
3. Moving objects: 1–3 smooth soft-edged blobs textured with an HDR patch of another view of the same split
   (never of another split), at ``2**U(-2, 3)`` times the scene's median luminance.  They sit at their
   reference position in the ground truth and in ``instances`` (object IDs where their opacity is ≥ 0.5)
   and move linearly, 3–15 px per frame, in the other frames.
4. Camera shake: the short and long frames are warped by a random rotation (≤ 1°) about the scene centre
   and translation (≤ 3 px per axis); the reference frame is not, so the ground truth is aligned with it.
5. Capture, per frame with exposure ``e = 2**stop``::

       x   = radiance · e                                   # linear, 1 = sensor white
       raw = clip(x + N(0, SHOT · x + READ**2), 0, 1)       # shot + read noise (synth's constants), clipping
       ldr = round(raw ** (1/2.2) · 255) / 255              # gamma 2.2 CRF, 8-bit output

   The datasets (and AHDRNet's inputs, ``ldr**2.2 / 2**stop``) assume exactly this gamma-2.2 response.
   ``write_scene`` stores the 8-bit values as 16-bit tifs (levels · 257).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..validation import check
from .kalantari import write_scene
from .rgbe import read_rgbe
from .synth import GAMMA, READ, SHOT, STOPS, Scene

PANORAMAS: dict[str, tuple[str, ...]] = {
    "train": (
        "adams_place_bridge",
        "dikhololo_night",
        "empty_warehouse_01",
        "immenstadter_horn",
        "kiara_1_dawn",
        "lebombo",
        "rooitou_park",
        "studio_small_03",
    ),
    "validation": ("forest_slope", "venice_sunset"),
    "test": ("potsdamer_platz", "st_fagans_interior"),
}
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "real"
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luminance of linear RGB
MARGIN = 8  # px; rotation of 1° at a 176 px scene's corner plus 3 px of translation stays below it
MID_GREY = 0.18
METER_JITTER = 0.5  # EV
HIGHLIGHT_PERCENTILE = 99.9
PROTECT_STOPS = 4.0
N_OBJECTS = (1, 3)
OBJECT_RADIUS = (0.1, 0.22)  # fraction of the scene side
OBJECT_EDGE = 1.5  # px over which an object's opacity ramps from 0 to 1
OBJECT_STOPS = (-2.0, 3.0)  # object brightness relative to the scene median, in stops
OBJECT_SPEED = (3.0, 15.0)  # px per frame
SHAKE_DEG, SHAKE_PX = 1.0, 3.0
LDR_LEVELS = 255
VERSION = 1  # bump when the generator's output changes, so stale datasets are not reused


def real_view_paths(split: str) -> list[Path]:
    """The shipped views of a split's panoramas ("train", "validation" or "test"), sorted by file name."""
    check("split", split, one_of=tuple(PANORAMAS))
    paths = sorted(p for name in PANORAMAS[split] for p in ASSETS.glob(f"{name}_*.hdr"))
    missing = [name for name in PANORAMAS[split] if not any(p.stem.rsplit("_", 1)[0] == name for p in paths)]
    if missing:
        raise FileNotFoundError(
            f"no shipped views of {missing} in {ASSETS} (installed without its package data?): "
            "rebuild them with scripts/make_real_views.py"
        )
    return paths


def _exposure_scale(rng: np.random.Generator, radiance: np.ndarray) -> float:
    """Factor taking (H, W, 3) radiance to the ground truth's scale (step 2 of the module docstring)."""
    median = np.median(radiance @ LUMA)
    if median <= 0:
        raise ValueError("the view is mostly black: there is nothing to meter an exposure on")
    metered = MID_GREY * 2 ** rng.uniform(-METER_JITTER, METER_JITTER) / (2 ** STOPS[1] * median)
    protected = 1 / np.percentile(radiance.max(axis=2), HIGHLIGHT_PERCENTILE)
    return float(max(min(metered, protected), metered / 2**PROTECT_STOPS))


def _blob(rng: np.random.Generator, radius: float) -> np.ndarray:
    """(s, s) float32 opacity of a smooth random blob with soft edges, s = 2 · ceil(1.3 · radius) + 1."""
    r = int(np.ceil(1.3 * radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
    theta = np.arctan2(yy, xx)
    wobble = sum(rng.uniform(-0.15, 0.15) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4))
    outline = radius * (1 + wobble)
    return np.clip((outline - np.hypot(yy, xx)) / OBJECT_EDGE + 0.5, 0, 1).astype(np.float32)


def _texture(rng: np.random.Generator, donor: np.ndarray, side: int, level: float) -> np.ndarray:
    """(side, side, 3) random patch of ``donor``, randomly flipped, scaled to median luminance ``level``."""
    top, left = rng.integers(0, donor.shape[0] - side + 1), rng.integers(0, donor.shape[1] - side + 1)
    patch = donor[top : top + side, left : left + side]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return (patch * (level / max(np.median(patch @ LUMA), 1e-12))).astype(np.float32)


def _shake(rng: np.random.Generator, centre: tuple[float, float]) -> np.ndarray:
    """(2, 3) affine map of a small random rotation about ``centre`` (x, y) plus a translation."""
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-SHAKE_DEG, SHAKE_DEG), 1.0)
    m[:, 2] += rng.uniform(-SHAKE_PX, SHAKE_PX, 2)
    return m


def _capture(rng: np.random.Generator, radiance: np.ndarray, stop: float) -> np.ndarray:
    """One 8-bit gamma-encoded capture (H, W, 3) float32 in [0, 1] of linear radiance (H, W, 3) at 2**stop."""
    x = radiance.astype(np.float64) * 2.0**stop
    raw = np.clip(x + rng.standard_normal(x.shape) * np.sqrt(SHOT * x + READ**2), 0, 1)
    return (np.round(raw ** (1 / GAMMA) * LDR_LEVELS) / LDR_LEVELS).astype(np.float32)


def make_bracket(
    view: np.ndarray, donors: Sequence[np.ndarray], seed: int, size: int | None = None, motion: bool = True
) -> Scene:
    """Synthesise one dynamic three-exposure scene from a real HDR view, deterministic in ``seed``.

    Args:
        view: (V, V', 3) float32 linear radiance at any scale (a shipped view).
        donors: views whose patches texture the moving objects, each wider and taller than 0.6 · S; pass
            views of the same split only.
        seed: any non-negative int; the same seed and inputs give identical arrays.
        size: side S of the square scene; None takes the largest, min(V, V') − 2 · MARGIN.
        motion: False keeps the objects at their reference positions and the camera still, so that all
            three frames are aligned (for tests of the capture model).

    Returns:
        A ``synth.Scene``: hdr (S, S, 3) float32 in [0, 1] at the short frame's scale, aligned with the
        reference; ldrs 3 × (S, S, 3) float32 multiples of 1/255; stops (0, 2, 4); instances (S, S) and
        frame_instances (3, S, S) int32 object IDs, 0 = background.
    """
    largest = min(view.shape[:2]) - 2 * MARGIN
    size = largest if size is None else size
    if not 16 <= size <= largest:
        raise ValueError(f"size must lie in [16, {largest}] for a {view.shape[0]}×{view.shape[1]} view, got {size}")
    if not donors:
        raise ValueError("make_bracket needs at least one donor view to texture the moving objects")
    rng = np.random.default_rng(seed)
    top, left = (rng.integers(MARGIN, d - MARGIN - size + 1) for d in view.shape[:2])
    canvas = view.astype(np.float32) * _exposure_scale(rng, view[top : top + size, left : left + size])
    median = float(np.median(canvas[top : top + size, left : left + size] @ LUMA))

    frames = [canvas.copy() for _ in STOPS]
    ids = [np.zeros(canvas.shape[:2], np.uint8) for _ in STOPS]
    for oid in range(1, int(rng.integers(N_OBJECTS[0], N_OBJECTS[1] + 1)) + 1):
        alpha = _blob(rng, rng.uniform(*OBJECT_RADIUS) * size)
        side = alpha.shape[0]
        texture = _texture(rng, donors[rng.integers(len(donors))], side, median * 2 ** rng.uniform(*OBJECT_STOPS))
        centre = np.array([top, left]) + rng.uniform(0.15, 0.85, 2) * size
        angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*OBJECT_SPEED) * motion
        velocity = speed * np.array([np.sin(angle), np.cos(angle)])
        for f, (frame, frame_ids) in enumerate(zip(frames, ids)):
            y, x = np.round(centre + (f - 1) * velocity).astype(int) - side // 2
            # clip the sprite to the canvas: objects may leave the view
            y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + side, canvas.shape[0]), min(x + side, canvas.shape[1])
            if y0 >= y1 or x0 >= x1:
                continue
            a = alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
            frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1] * (1 - a) + texture[y0 - y : y1 - y, x0 - x : x1 - x] * a
            frame_ids[y0:y1, x0:x1][a[..., 0] >= 0.5] = oid

    ldrs, instances = [], []
    for f, (frame, frame_ids) in enumerate(zip(frames, ids)):
        frame = np.minimum(frame, 1)
        if motion and f != 1:
            shake = _shake(rng, (left + (size - 1) / 2, top + (size - 1) / 2))
            dsize, border = (frame.shape[1], frame.shape[0]), cv2.BORDER_REFLECT_101
            frame = cv2.warpAffine(frame, shake, dsize, flags=cv2.INTER_LINEAR, borderMode=border)
            frame_ids = cv2.warpAffine(frame_ids, shake, dsize, flags=cv2.INTER_NEAREST, borderMode=border)
        frames[f] = frame[top : top + size, left : left + size]
        instances.append(frame_ids[top : top + size, left : left + size].astype(np.int32))
        ldrs.append(_capture(rng, frames[f], STOPS[f]))
    return Scene(
        hdr=np.ascontiguousarray(frames[1], np.float32),
        ldrs=ldrs,
        stops=STOPS,
        instances=instances[1],
        frame_instances=np.stack(instances),
    )


def _scene_seed(seed: int, split: str, view: int, bracket: int) -> int:
    """Per-scene seed; the split is part of it, so evaluation scenes draw from their own streams."""
    return int(np.random.SeedSequence([seed, list(PANORAMAS).index(split), view, bracket]).generate_state(1)[0])


def generate_real_dataset(
    root: str | Path, eval_split: str, size: int | None = None, seed: int = 0, brackets_per_view: int = 1
) -> Path:
    """Write real-content brackets in Kalantari's layout (plus ``instances.png``) and return ``root``.

    ``<root>/Training/<view>_<b>`` holds ``brackets_per_view`` scenes of each train view, ``<root>/Test/...``
    the same for the views of ``eval_split`` ("validation" or "test").  ``root/real.json`` records the
    settings (``eval_split`` says which split ``Test/`` holds); if it matches, nothing is regenerated, if it
    does not, FileExistsError names the differences.

    Args:
        root: dataset folder, new or empty (or holding a matching ``real.json``).
        eval_split: the split whose views go to ``Test/``; train views always go to ``Training/``.
        size: scene side in px; None takes the largest (view side − 2 · MARGIN, 176 for the shipped views).
        seed: dataset seed; each scene's seed derives from it, the split, the view and the bracket index.
        brackets_per_view: scenes per view, each with its own exposure, objects, shake and noise.
    """
    check("eval_split", eval_split, one_of=("validation", "test"))
    check("brackets_per_view", brackets_per_view, kind=int, at_least=1)
    root = Path(root)
    splits = {"Training": "train", "Test": eval_split}
    paths = {folder: real_view_paths(split) for folder, split in splits.items()}
    manifest = {
        "version": VERSION,
        "eval_split": eval_split,
        "size": size,
        "seed": seed,
        "brackets_per_view": brackets_per_view,
        "views": {folder: [p.stem for p in ps] for folder, ps in paths.items()},
    }
    manifest_path = root / "real.json"
    if manifest_path.exists():
        found = json.loads(manifest_path.read_text())
        if found == manifest:
            return root
        diff = [
            k if k == "views" else f"{k}={found.get(k)!r} (asked {v!r})"  # view lists are long: name the key only
            for k, v in manifest.items()
            if found.get(k) != v
        ]
        raise FileExistsError(
            f"{root} holds a real-content dataset made with other settings: {', '.join(diff)}; "
            "delete it or pass another root"
        )
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and has no real.json: pass an empty or new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    # built beside root and renamed into place: processes that start together (seeds of one experiment run in
    # parallel) each build a copy, the first rename publishes it, the others find it and drop theirs
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        views = {folder: [read_rgbe(p) for p in ps] for folder, ps in paths.items()}
        jobs = [(folder, i, b) for folder in splits for i in range(len(paths[folder]))
                for b in range(brackets_per_view)]
        for folder, i, b in tqdm(jobs, desc=f"real-content scenes -> {root}"):
            donors = views[folder][:i] + views[folder][i + 1 :]
            scene = make_bracket(views[folder][i], donors, _scene_seed(seed, splits[folder], i, b), size)
            write_scene(build / folder / f"{paths[folder][i].stem}_{b}", scene.ldrs, scene.stops, scene.hdr,
                        scene.instances)
        (build / "real.json").write_text(json.dumps(manifest) + "\n")
        try:
            if root.exists():
                root.rmdir()  # empty, checked above
            build.rename(root)
        except OSError:
            if not (manifest_path.exists() and json.loads(manifest_path.read_text()) == manifest):
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return root
