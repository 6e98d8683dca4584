"""Perspective views of equirectangular panoramas: viewing direction, wrap-around in longitude."""
import numpy as np
import pytest
from panorama import perspective_view  # scripts/ (pytest's pythonpath): it serves make_real_views.py only

H, W = 64, 128


def _angle_pano() -> np.ndarray:
    """(H, W, 3) panorama holding (cos lon, sin lon, lat in degrees) at each pixel centre."""
    lon = np.radians((np.arange(W) + 0.5) / W * 360 - 180)
    lat = 90 - (np.arange(H) + 0.5) / H * 180
    lon, lat = np.meshgrid(lon, lat)
    return np.stack([np.cos(lon), np.sin(lon), lat], axis=-1).astype(np.float32)


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (37, -8), (-120, 5), (180, 0)])
def test_centre_pixel_looks_along_yaw_and_pitch(yaw, pitch):
    view = perspective_view(_angle_pano(), yaw, pitch, 80, 33)  # odd size: one pixel on the optical axis
    assert view.shape == (33, 33, 3) and view.dtype == np.float32
    cos, sin, lat = view[16, 16]
    # bilinear interpolation of cos / sin between pixel centres 2.8° apart shrinks them by < 0.1 %
    lon = np.degrees(np.arctan2(sin, cos))
    assert (lon - yaw + 180) % 360 - 180 == pytest.approx(0, abs=0.05)  # -180° and 180° are the same
    assert lat == pytest.approx(pitch, abs=0.05)


def test_right_of_the_image_is_larger_longitude_and_top_is_up():
    view = perspective_view(_angle_pano(), 10, 0, 60, 33)
    lon = np.degrees(np.arctan2(view[16, :, 1], view[16, :, 0]))
    assert (np.diff(lon) > 0).all() and lon[0] == pytest.approx(-20, abs=1) and lon[-1] == pytest.approx(40, abs=1)
    assert (np.diff(view[:, 16, 2]) < 0).all()


def test_wraps_around_in_longitude():
    pano = np.random.default_rng(0).random((H, W, 3)).astype(np.float32)
    # looking at the seam (yaw 180) must equal looking at the middle of the panorama rolled by half a turn
    across_seam = perspective_view(pano, 180, 3, 90, 40)
    middle = perspective_view(np.roll(pano, W // 2, axis=1), 0, 3, 90, 40)
    np.testing.assert_allclose(across_seam, middle, atol=1e-5)
    column = np.zeros((H, W, 3), np.float32)
    column[:, 0] = 1  # the first column only: the view at yaw -180 shows half of it at its centre
    assert perspective_view(column, -180, 0, 10, 33)[16, 16, 0] == pytest.approx(0.5, abs=0.05)
