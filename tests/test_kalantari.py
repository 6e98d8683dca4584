"""Kalantari layout: writer -> reader round trip and the AHDR Dataset."""
import numpy as np
import pytest
import torch

from semkt_plugin import layout
from semkt_plugin.reproduction import kalantari

H, W = 12, 20


def _scene(rng):
    ldrs = [rng.uniform(0, 1, (H, W, 3)).astype(np.float32) for _ in range(3)]
    hdr = (rng.uniform(0, 1, (H, W, 3)) ** 3 * 1.5).astype(np.float32)
    instances = rng.integers(0, 4, (H, W))
    return ldrs, hdr, instances


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    ldrs, hdr, instances = _scene(rng)
    kalantari.write_scene(tmp_path / "Training" / "001", ldrs, [0, 3, 6], hdr, instances)
    scene = kalantari.read_scene(tmp_path / "Training" / "001")
    np.testing.assert_array_equal(scene.stops, [0, 3, 6])
    for got, want in zip(scene.ldrs, ldrs):
        assert np.abs(got - want).max() <= 0.5 / 65535 + 1e-7  # 16-bit rounding
    # RGBE: 8-bit mantissa shared by the pixel's channels, so the error is below one mantissa step,
    # 2**-7 of the pixel's largest channel (OpenCV truncates rather than rounds)
    bound = hdr.max(axis=2, keepdims=True) * 2.0**-7
    assert np.all(np.abs(scene.hdr - hdr) <= bound)
    np.testing.assert_array_equal(scene.instances, instances)


def test_hdr_channels_stay_rgb(tmp_path):
    red = np.zeros((4, 4, 3), np.float32)
    red[..., 0] = 0.5
    kalantari.write_hdr(tmp_path / "r.hdr", red)
    np.testing.assert_allclose(kalantari.read_hdr(tmp_path / "r.hdr"), red)


def test_reader_does_not_need_instances_or_label(tmp_path):
    ldrs, _, _ = _scene(np.random.default_rng(1))
    kalantari.write_scene(tmp_path / "s", ldrs, [0, 2, 4])
    scene = kalantari.read_scene(tmp_path / "s")
    assert scene.hdr is None and scene.instances is None


def test_reader_names_bad_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="expected 3"):
        kalantari.read_scene(tmp_path / "empty")
    with pytest.raises(ValueError, match="split"):
        layout.scene_dirs(tmp_path, "Train")


def test_dataset_returns_ahdr_inputs(tmp_path):
    ldrs, hdr, _ = _scene(np.random.default_rng(2))
    kalantari.write_scene(tmp_path / "Test" / "a", ldrs, [0, 2, 4], hdr)
    x1, x2, x3, y = kalantari.KalantariDataset(tmp_path, "Test")[0]
    assert x1.shape == (6, H, W) and y.shape == (3, H, W)
    ldr_long = torch.from_numpy(kalantari.read_scene(tmp_path / "Test" / "a").ldrs[2]).permute(2, 0, 1)
    torch.testing.assert_close(x3[:3], ldr_long)
    torch.testing.assert_close(x3[3:], ldr_long**2.2 / 16)
    crops = kalantari.KalantariDataset(tmp_path, "Test", crop=8, augment=True)
    assert all(t.shape[-2:] == (8, 8) for t in crops[0])


def test_crops_follow_the_dataset_seed_not_the_global_rng(tmp_path):
    ldrs, hdr, _ = _scene(np.random.default_rng(3))
    kalantari.write_scene(tmp_path / "Training" / "a", ldrs, [0, 2, 4], hdr)
    first = kalantari.KalantariDataset(tmp_path, "Training", crop=6, augment=True, seed=1)
    second = kalantari.KalantariDataset(tmp_path, "Training", crop=6, augment=True, seed=1)
    a = [first[0][3] for _ in range(4)]
    torch.rand(100)  # other code drawing random numbers in between
    b = [second[0][3] for _ in range(4)]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert any(not torch.equal(a[0], x) for x in a[1:])  # successive draws differ
