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

from dataclasses import dataclass, field

import numpy as np

GAMMA = 2.2
SHOT = 1e-3  # shot-noise variance per unit signal (a 1000 e- full well, normalised)
READ = 3e-3  # read-noise standard deviation, in units of sensor white
ADC_BITS = 12
STOPS = (0.0, 2.0, 4.0)  # EV -2 / 0 / +2 around the reference, relative to the shortest


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


def _paste(img: np.ndarray, ids: np.ndarray, sprite: np.ndarray, mask: np.ndarray, top: int, left: int, oid: int) -> None:
    """Draw a sprite in place at (top, left), cropping at the image border."""
    h, w = ids.shape
    s = mask.shape[0]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + s, h), min(left + s, w)
    if y0 >= y1 or x0 >= x1:
        return
    m = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    img[y0:y1, x0:x1][m] = sprite[y0 - top : y1 - top, x0 - left : x1 - left][m]
    ids[y0:y1, x0:x1][m] = oid


def capture(rng: np.random.Generator, radiance: np.ndarray, stop: float) -> np.ndarray:
    """Simulate one gamma-encoded capture (H, W, 3) in [0, 1] of linear radiance (H, W, 3) at 2**stop."""
    x = radiance * 2.0**stop
    noisy = x + rng.standard_normal(x.shape) * np.sqrt(SHOT * x + READ**2)
    levels = 2**ADC_BITS - 1
    raw = np.round(np.clip(noisy, 0, 1) * levels) / levels
    return (raw ** (1 / GAMMA)).astype(np.float32)


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
    objects = []
    for _ in range(int(rng.integers(2, 6))):
        size_px = rng.uniform(0.08, 0.2) * min(h, w)
        sprite, mask = _sprite(rng, size_px)
        centre = rng.uniform([0.1 * h, 0.1 * w], [0.9 * h, 0.9 * w])
        velocity = rng.uniform(-0.06, 0.06, 2) * min(h, w)  # per frame, reference in the middle
        objects.append((sprite, mask, centre, velocity))

    frames, frame_ids = [], np.zeros((3, h, w), np.int32)
    for f in range(3):
        img = background.copy()
        for oid, (sprite, mask, centre, velocity) in enumerate(objects, start=1):
            top, left = np.round(centre + (f - 1) * velocity).astype(int) - mask.shape[0] // 2
            _paste(img, frame_ids[f], sprite, mask, top, left, oid)
        frames.append(img)
    ldrs = [capture(rng, frames[f], stops[f]) for f in range(3)]
    return Scene(
        hdr=frames[1].astype(np.float32),
        ldrs=ldrs,
        stops=tuple(float(s) for s in stops),
        instances=frame_ids[1].copy(),
        frame_instances=frame_ids,
    )
