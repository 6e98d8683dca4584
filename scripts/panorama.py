"""Perspective (pinhole) views of equirectangular panoramas.

Panorama convention: (H, W, 3) with longitude running left to right over [-180°, 180°) and latitude from
+90° (top row) to -90° (bottom row), pixel centres at ``lon = (col + 0.5) / W * 360° - 180°`` and
``lat = 90° - (row + 0.5) / H * 180°``.  A camera at yaw 0 and pitch 0 looks at the panorama's centre
(lon 0, lat 0); positive yaw turns right (towards larger longitude), positive pitch looks up.  Views near the
poles sample the stretched top and bottom rows, so callers keep the pitch small.
"""
from __future__ import annotations

import numpy as np


def view_directions(yaw_deg: float, pitch_deg: float, fov_deg: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (radians) seen by each pixel of a square pinhole view.

    Args:
        yaw_deg, pitch_deg: viewing direction of the optical axis.
        fov_deg: horizontal (= vertical) field of view, in (0, 180).
        size: side of the view in pixels.

    Returns:
        lon, lat: (size, size) float64, lon in [-pi, pi], lat in [-pi/2, pi/2].
    """
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    focal = size / 2 / np.tan(np.radians(fov_deg) / 2)
    coords = (np.arange(size) + 0.5 - size / 2) / focal
    x, y = np.meshgrid(coords, -coords)  # camera frame: x right, y up, z forward
    z = np.ones_like(x)
    pitch, yaw = np.radians(pitch_deg), np.radians(yaw_deg)
    y, z = y * np.cos(pitch) + z * np.sin(pitch), z * np.cos(pitch) - y * np.sin(pitch)
    x, z = x * np.cos(yaw) + z * np.sin(yaw), z * np.cos(yaw) - x * np.sin(yaw)
    return np.arctan2(x, z), np.arctan2(y, np.hypot(x, z))


def sample_equirect(pano: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Bilinear samples of a panorama at given directions, wrapping around in longitude.

    Args:
        pano: (H, W, C) equirectangular image.
        lon, lat: (...) radians.

    Returns:
        (..., C) float32.
    """
    h, w = pano.shape[:2]
    u = (lon + np.pi) / (2 * np.pi) * w - 0.5
    v = np.clip((np.pi / 2 - lat) / np.pi * h - 0.5, 0, h - 1)  # the pole rows extend past their centres
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0)[..., None], (v - v0)[..., None]
    c0, c1 = u0.astype(int) % w, (u0.astype(int) + 1) % w
    r0, r1 = v0.astype(int), np.minimum(v0.astype(int) + 1, h - 1)
    top = pano[r0, c0] * (1 - fu) + pano[r0, c1] * fu
    bottom = pano[r1, c0] * (1 - fu) + pano[r1, c1] * fu
    return (top * (1 - fv) + bottom * fv).astype(np.float32)


def perspective_view(pano: np.ndarray, yaw_deg: float, pitch_deg: float, fov_deg: float, size: int) -> np.ndarray:
    """Render a square pinhole view of an equirectangular panorama with bilinear sampling.

    Args:
        pano: (H, W, 3) equirectangular image (see the module docstring for the angles).
        yaw_deg, pitch_deg: direction of the optical axis in degrees.
        fov_deg: horizontal (= vertical) field of view in degrees, in (0, 180).
        size: side of the view in pixels.

    Returns:
        (size, size, 3) float32.
    """
    if pano.ndim != 3 or pano.shape[2] != 3:
        raise ValueError(f"perspective_view needs an (H, W, 3) panorama, got shape {pano.shape}")
    return sample_equirect(pano, *view_directions(yaw_deg, pitch_deg, fov_deg, size))
