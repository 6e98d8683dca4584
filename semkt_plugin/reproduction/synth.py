"""Synthetic dynamic HDR scenes in Kalantari's layout (seeded, numpy only).

A scene is a linear radiance map with a wide luminance range (sky and lamps up
to ~1, deep shadows ~1e-3, i.e. the shortest exposure's scale as in
Kalantari's ``HDRImg.hdr``), textured background regions and textured
foreground objects that move rigidly between the three captures.  The middle
capture is the reference: the HDR ground truth and ``Scene.instances`` are
rendered at the objects' reference positions.

Capture model, per frame ``f`` with exposure ``e_f = 2**stops[f]``::

    x     = radiance_f * e_f                              # linear, 1 = sensor white
    noisy = x + N(0, SHOT * x + READ**2)                  # shot + read noise
    raw   = round(clip(noisy, 0, 1) * (2**ADC_BITS - 1)) / (2**ADC_BITS - 1)
    ldr   = raw ** (1 / GAMMA)                            # the CRF the datasets assume

so ``ldr**GAMMA / e_f`` estimates the radiance wherever the frame is neither
clipped nor buried in noise.  The shortest frame is dominated by noise in the
shadows; the longest clips everything above ``1 / 16``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..layout import SPLITS
from .kalantari import write_scene

GAMMA = 2.2
SHOT = 1e-3  # shot-noise variance per unit signal (a 1000 e- full well, normalised)
READ = 3e-3  # read-noise standard deviation, in units of sensor white
ADC_BITS = 12
STOPS = (0.0, 2.0, 4.0)  # EV -2 / 0 / +2 around the reference, relative to the shortest
RAW_BITS = 10
RAW_FRAMES = 5
VERSION = 1  # bump when the generator's output changes, so stale datasets are not reused


@dataclass
class Scene:
    """One dynamic HDR scene.

    hdr: (H, W, 3) float32 linear radiance of the reference (middle) frame, roughly [0, 1].
    ldrs: 3 × (H, W, 3) float32 gamma-encoded captures in [0, 1] (short, reference, long),
        before 16-bit quantisation.
    stops: exposure of each capture in stops relative to the shortest (exposure = 2**stops).
    instances: (H, W) int32 object IDs in the reference frame, 0 = background.
    frame_instances: (3, H, W) int32 object IDs in each capture (index 1 equals ``instances``).
    """

    hdr: np.ndarray
    ldrs: list[np.ndarray]
    stops: tuple[float, ...]
    instances: np.ndarray
    frame_instances: np.ndarray = field(repr=False)


@dataclass
class RawScene:
    """One dynamic RAW bracket in BracketIRE's convention (see ``make_raw_scene``).

    gt: (4, H/2, W/2) float32 linear packed RGGB of the reference (frame 0), about [0, 16].
    raws: (5, 4, H/2, W/2) float32 10-bit levels / 1023, shortest first.
    exposures: exposure of each frame relative to ``gt``: 4**(t - 2).
    instances: (H/2, W/2) int32 object IDs in the reference frame, 0 = background.
    frame_instances: (5, H/2, W/2) int32 object IDs in each frame (index 0 equals ``instances``).
    """

    gt: np.ndarray
    raws: np.ndarray
    exposures: tuple[float, ...]
    instances: np.ndarray
    frame_instances: np.ndarray = field(repr=False)


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a (h0, w0) grid to (h, w) by corner alignment."""
    h0, w0 = grid.shape
    ys = np.linspace(0, h0 - 1, h)
    xs = np.linspace(0, w0 - 1, w)
    y0 = np.minimum(ys.astype(int), h0 - 2)
    x0 = np.minimum(xs.astype(int), w0 - 2)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _fractal(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(h, w) zero-mean smooth noise with three octaves, std about 1."""
    out = np.zeros((h, w))
    for octave in range(3):
        c = max(cell / 2**octave, 2.0)
        grid = rng.standard_normal((int(h / c) + 2, int(w / c) + 2))
        out += _upsample(grid, h, w) / 2**octave
    return out / out.std().clip(1e-6)


def _tint(rng: np.random.Generator, saturation: float) -> np.ndarray:
    """(3,) colour with mean 1."""
    rgb = 1 + saturation * rng.uniform(-1, 1, 3)
    return rgb / rgb.mean()


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w) positive multiplicative texture with mean about 1: noise, stripes or checker."""
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    if kind == 0:
        pattern = 0.5 * _fractal(rng, h, w, rng.uniform(4, 16))
    elif kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 14)
        pattern = 0.6 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    else:
        period = int(rng.integers(4, 12))
        pattern = 0.6 * (((yy // period + xx // period) % 2) * 2 - 1)
    return np.exp(pattern + 0.15 * _fractal(rng, h, w, 3))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) static radiance: bright sky with clouds and a sun, Voronoi ground with deep shadows, lamps."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    horizon = rng.uniform(0.25, 0.5) * h
    sky_lum = rng.uniform(0.15, 0.35) * (1 + (horizon - yy) / h)
    sky_lum *= np.exp(0.3 * _fractal(rng, h, w, h / 6))
    sky = sky_lum[..., None] * _tint(rng, 0.25) * np.array([0.85, 0.95, 1.2])

    seeds = rng.uniform([horizon, 0], [h, w], (int(rng.integers(4, 8)), 2))
    region = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    # log-uniform region brightness, with the first two regions forced into deep shadow
    lum = np.exp(rng.uniform(np.log(5e-3), np.log(0.12), len(seeds)))
    lum[:2] = np.exp(rng.uniform(np.log(1e-3), np.log(3e-3), 2))
    ground = np.zeros((h, w, 3))
    for k in range(len(seeds)):
        inside = region == k
        ground[inside] = (lum[k] * _texture(rng, h, w)[inside])[:, None] * _tint(rng, 0.4)
    img = np.where((yy < horizon)[..., None], sky, ground)

    for _ in range(int(rng.integers(1, 4))):  # sun / lamps: small discs with a soft glow, peak ~1
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.01, 0.04) * min(h, w)
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        glow = np.where(d2 < 1, 1.0, 0.3 * np.exp(-(d2 - 1) / 4))
        img = np.maximum(img, rng.uniform(0.7, 1.0) * glow[..., None] * _tint(rng, 0.1))
    return img


def _sprite(rng: np.random.Generator, size: float) -> tuple[np.ndarray, np.ndarray]:
    """A textured object: (s, s, 3) radiance and (s, s) bool mask, s = 2 * ceil(size) + 1."""
    r = int(np.ceil(size))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)
    ry, rx = size * rng.uniform(0.6, 1.0, 2)
    kind = rng.integers(3)
    if kind == 0:  # ellipse
        mask = (yy / ry) ** 2 + (xx / rx) ** 2 <= 1
    elif kind == 1:  # rectangle
        mask = (np.abs(yy) <= ry * 0.85) & (np.abs(xx) <= rx * 0.85)
    else:  # blob: radius modulated by angular harmonics
        theta = np.arctan2(yy, xx)
        radius = 1 + sum(rng.uniform(-0.2, 0.2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        mask = np.hypot(yy / ry, xx / rx) <= radius
    lum = np.exp(rng.uniform(np.log(3e-3), np.log(0.4)))
    radiance = (lum * _texture(rng, 2 * r + 1, 2 * r + 1))[..., None] * _tint(rng, 0.5)
    return radiance, mask


def _paste(img: np.ndarray, ids: np.ndarray, sprite: np.ndarray, mask: np.ndarray, top: int, left: int,
           oid: int) -> None:
    """Draw a sprite in place at (top, left), cropping at the image border."""
    h, w = ids.shape
    s = mask.shape[0]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s, h), min(left + s, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    img[y0:y1, x0:x1][m] = sprite[y0 - top : y1 - top, x0 - left : x1 - left][m]
    ids[y0:y1, x0:x1][m] = oid


def _sensor(rng: np.random.Generator, x: np.ndarray, bits: int) -> np.ndarray:
    """Noisy, clipped, quantised linear sensor values in [0, 1] for a linear exposure ``x`` (1 = sensor white)."""
    noisy = x + rng.standard_normal(x.shape) * np.sqrt(SHOT * x + READ**2)
    levels = 2**bits - 1
    return np.round(np.clip(noisy, 0, 1) * levels) / levels


def capture(rng: np.random.Generator, radiance: np.ndarray, stop: float) -> np.ndarray:
    """Simulate one gamma-encoded capture (H, W, 3) in [0, 1] of linear radiance (H, W, 3) at 2**stop."""
    return (_sensor(rng, radiance * 2.0**stop, ADC_BITS) ** (1 / GAMMA)).astype(np.float32)


def _objects(rng: np.random.Generator, h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """2-5 moving objects as (sprite, mask, reference centre (2,), velocity per frame (2,))."""
    objects = []
    for _ in range(int(rng.integers(2, 6))):
        sprite, mask = _sprite(rng, rng.uniform(0.08, 0.2) * min(h, w))
        centre = rng.uniform([0.1 * h, 0.1 * w], [0.9 * h, 0.9 * w])
        velocity = rng.uniform(-0.06, 0.06, 2) * min(h, w)
        objects.append((sprite, mask, centre, velocity))
    return objects


def _render(background: np.ndarray, objects: list, time: float) -> tuple[np.ndarray, np.ndarray]:
    """Radiance (H, W, 3) and object IDs (H, W) at ``time`` frames after the reference."""
    img, ids = background.copy(), np.zeros(background.shape[:2], np.int32)
    for oid, (sprite, mask, centre, velocity) in enumerate(objects, start=1):
        top, left = np.round(centre + time * velocity).astype(int) - mask.shape[0] // 2
        _paste(img, ids, sprite, mask, top, left, oid)
    return img, ids


def make_scene(seed: int, size: tuple[int, int] = (256, 256), stops: tuple[float, ...] = STOPS) -> Scene:
    """Generate one dynamic three-exposure scene, deterministic in ``seed``.

    Args:
        seed: any non-negative int; the same seed gives identical arrays.
        size: (H, W) of the scene.
        stops: exposures in stops relative to the shortest, short to long; the middle one is the reference.
    """
    if len(stops) != 3:
        raise ValueError(f"make_scene needs three stops (short, reference, long), got {stops}")
    h, w = size
    rng = np.random.default_rng(seed)
    background = _background(rng, h, w)
    objects = _objects(rng, h, w)
    frames, ids = zip(*(_render(background, objects, f - 1) for f in range(3)))
    ldrs = [capture(rng, frames[f], stops[f]) for f in range(3)]
    return Scene(
        hdr=frames[1].astype(np.float32),
        ldrs=ldrs,
        stops=tuple(float(s) for s in stops),
        instances=ids[1].copy(),
        frame_instances=np.stack(ids),
    )


def pack_rggb(rgb: np.ndarray) -> np.ndarray:
    """Mosaic (H, W, 3) RGB into packed RGGB (4, H/2, W/2): R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)."""
    return np.stack([rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1], rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]])


def make_raw_scene(seed: int, size: tuple[int, int] = (256, 256)) -> RawScene:
    """Generate one dynamic five-frame RAW bracket in BracketIRE's convention, deterministic in ``seed``.

    BracketIRE (cszhilu1998/BracketIRE, ``syn_data_gen/gen_bracket.py``) stores frames ``raw_{4**t}.npy``,
    t = 0..4, captured at exposure ``4**(t - 2)`` relative to the ground truth, 10-bit, read as ``/ 1023``;
    TMRNet's caller multiplies frame t by ``4**(2 - t)`` and frame 0 (the shortest) is the reference.  The
    ground truth is therefore about [0, 16]; its loss uses ``gt / 16``.  Unlike BracketIRE we do not average
    sub-frames, so longer frames carry displacement but no motion blur.

    Args:
        seed: any non-negative int; the same seed gives identical arrays.
        size: (H, W) of the RGB scene before packing, both even.
    """
    h, w = size
    if h % 2 or w % 2:
        raise ValueError(f"RAW scenes pack 2×2 Bayer cells: size must be even, got {size}")
    rng = np.random.default_rng(seed)
    background = _background(rng, h, w)
    objects = _objects(rng, h, w)
    # half the LDR scenes' per-frame speed: five frames then span about as much motion as three
    frames, ids = zip(*(_render(background, objects, t / 2) for t in range(RAW_FRAMES)))
    raws = np.stack([_sensor(rng, pack_rggb(frames[t]) * 4.0**t, RAW_BITS) for t in range(RAW_FRAMES)])
    return RawScene(
        gt=(4.0 ** (RAW_FRAMES // 2) * pack_rggb(frames[0])).astype(np.float32),
        raws=raws.astype(np.float32),
        exposures=tuple(4.0 ** (t - RAW_FRAMES // 2) for t in range(RAW_FRAMES)),
        instances=ids[0][0::2, 0::2].copy(),
        frame_instances=np.stack(ids)[:, 0::2, 0::2],
    )


def _scene_seed(seed: int, split: str, index: int) -> int:
    """Independent per-scene seed from the dataset seed, the split and the scene index."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), index]).generate_state(1)[0])


def generate_dataset(
    root: str | Path, n_train: int = 16, n_test: int = 4, size: tuple[int, int] = (256, 256), seed: int = 0
) -> Path:
    """Write a synthetic dataset in Kalantari's layout (plus ``instances.png``) and return ``root``.

    ``root/synth.json`` records the arguments; if it matches, nothing is regenerated.
    """
    root = Path(root)
    manifest = {"version": VERSION, "n_train": n_train, "n_test": n_test, "size": list(size), "seed": seed}
    manifest_path = root / "synth.json"
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()) == manifest:
            return root
        raise FileExistsError(
            f"{root} holds a synthetic dataset made with other settings ({manifest_path.read_text().strip()}); "
            "delete it or pass another root"
        )
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty and has no synth.json: pass an empty or new folder")
    jobs = [(split, i) for split, n in zip(SPLITS, (n_train, n_test)) for i in range(n)]
    for split, i in tqdm(jobs, desc=f"synthetic scenes -> {root}"):
        scene = make_scene(_scene_seed(seed, split, i), size)
        write_scene(root / split / f"{i:03d}", scene.ldrs, scene.stops, scene.hdr, scene.instances)
    manifest_path.write_text(json.dumps(manifest) + "\n")  # written last: a partial dataset never matches
    return root
