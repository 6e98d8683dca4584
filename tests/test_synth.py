"""Synthetic scenes: determinism, the capture model (re-merging, noise, clipping), the dataset on disk."""
import numpy as np
import pytest

from semkt_plugin import layout
from semkt_plugin.reproduction import kalantari, synth
from semkt_plugin.reproduction.synth import ADC_BITS, GAMMA, READ, SHOT, make_raw_scene, make_scene

SIZE = (96, 128)
QUANT_VAR = 1 / (12 * (2**ADC_BITS - 1) ** 2)  # variance of uniform rounding to the ADC's levels


def _arrays(scene):
    return [scene.hdr, *scene.ldrs, scene.instances, scene.frame_instances]


def test_contract_fields():
    s = make_scene(0, SIZE)
    assert s.hdr.shape == (*SIZE, 3) and s.hdr.dtype == np.float32
    assert len(s.ldrs) == 3 and all(ldr.shape == (*SIZE, 3) and 0 <= ldr.min() and ldr.max() <= 1 for ldr in s.ldrs)
    assert s.stops == (0.0, 2.0, 4.0)
    assert s.instances.shape == SIZE and s.instances.min() == 0 and s.instances.max() >= 1
    np.testing.assert_array_equal(s.frame_instances[1], s.instances)


def test_same_seed_same_arrays_other_seed_differs():
    a, b, c = make_scene(7, SIZE), make_scene(7, SIZE), make_scene(8, SIZE)
    for x, y in zip(_arrays(a), _arrays(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.hdr, c.hdr)
    assert not np.array_equal(a.ldrs[0], c.ldrs[0])


def test_objects_move_between_frames():
    s = make_scene(1, SIZE)
    assert not np.array_equal(s.frame_instances[0], s.frame_instances[1])
    assert not np.array_equal(s.frame_instances[2], s.frame_instances[1])


def _frame_sd(x):
    """Predicted per-pixel noise std of a linear capture ``x`` (shot + read + rounding)."""
    return np.sqrt(SHOT * x + READ**2 + QUANT_VAR)


@pytest.mark.parametrize("seed", [0, 3])
def test_remerged_bracket_reproduces_hdr_within_noise(seed):
    # Static pixels see the same radiance H in all frames; frame f gives r_f = ldr**2.2 / e_f = H + n_f / e_f
    # with Var(n_f) = SHOT·H·e_f + READ² + Δ²/12 as long as it neither clips at 1 nor at 0.  A frame is
    # well exposed where x ± 4σ stays inside (0, 1); merging those with inverse-variance weights gives
    # Var(Ĥ) = 1 / Σ 1/Var(r_f), so z = (Ĥ - H)·sqrt(Σ 1/Var(r_f)) is standard normal: E[z²] = 1,
    # and over N independent pixels the mean of z² has std sqrt(2/N), that of z 1/sqrt(N).
    s = make_scene(seed, SIZE)
    h = s.hdr.astype(np.float64)
    static = np.broadcast_to(((s.frame_instances == 0).all(0))[..., None], h.shape)
    num, den = np.zeros_like(h), np.zeros_like(h)
    for ldr, stop in zip(s.ldrs, s.stops):
        e = 2.0**stop
        x, sd = h * e, _frame_sd(h * e)
        well_exposed = (x - 4 * sd > 0) & (x + 4 * sd < 1)
        num += well_exposed * (ldr.astype(np.float64) ** GAMMA / e) / (sd / e) ** 2
        den += well_exposed / (sd / e) ** 2
    used = static & (den > 0)
    assert used.sum() > 0.5 * static.sum()  # most static pixels are well exposed somewhere: the check is not vacuous
    z = (num[used] / den[used] - h[used]) * np.sqrt(den[used])
    n = used.sum()
    assert abs(np.mean(z**2) - 1) < 5 * np.sqrt(2 / n)
    assert abs(np.mean(z)) < 5 / np.sqrt(n)


def test_noise_dominates_the_dark_frame_in_shadows():
    # Deep shadows (H < 3e-3) exist by construction; there the short frame's signal x ≤ 3e-3 is below
    # its noise std (≥ READ = 3e-3), while the long frame (x = 16·H) is well above it.
    s = make_scene(2, SIZE)
    h = s.hdr.astype(np.float64)
    dark = ((s.frame_instances == 0).all(0))[..., None] & (h < 3e-3)
    assert dark.sum() > 100

    def snr(frame):
        x = h[dark] * 2.0 ** s.stops[frame]
        err = s.ldrs[frame][dark].astype(np.float64) ** GAMMA - x
        return x.mean() / np.sqrt(np.mean(err**2))

    assert snr(0) < 1 < snr(2)


def test_bright_frame_clips():
    s = make_scene(0, SIZE)
    x = s.hdr.astype(np.float64) * 2.0 ** s.stops[2]
    static = ((s.frame_instances == 0).all(0))[..., None]
    surely_over = static & (x - 4 * _frame_sd(x) > 1)
    assert surely_over.sum() > 0
    assert np.all(s.ldrs[2][np.broadcast_to(surely_over, x.shape)] == 1.0)
    assert (s.ldrs[2] == 1).mean() > (s.ldrs[0] == 1).mean()


def test_raw_scene_follows_bracketire_convention():
    r = make_raw_scene(4, (64, 96))
    assert r.gt.shape == (4, 32, 48) and r.raws.shape == (5, 4, 32, 48) and r.instances.shape == (32, 48)
    assert r.exposures == (1 / 16, 1 / 4, 1, 4, 16)
    np.testing.assert_array_equal(np.round(r.raws * 1023), r.raws * 1023 // 1)  # 10-bit levels
    np.testing.assert_array_equal(make_raw_scene(4, (64, 96)).raws, r.raws)
    # frame t, brought to the ground truth's scale by 4**(2 - t) as TMRNet's caller does, matches gt
    # wherever it is unclipped, within 5 predicted noise stds (10-bit rounding included)
    static = (r.frame_instances == 0).all(0)
    for t in range(5):
        x = r.gt * r.exposures[t]
        sd = np.sqrt(SHOT * x + READ**2 + 1 / (12 * 1023**2))
        ok = (x + 4 * sd < 1) & (x - 4 * sd > 0) & static
        z = (r.raws[t][ok] - x[ok]) / sd[ok]
        assert ok.sum() > 0 and abs(np.mean(z**2) - 1) < 5 * np.sqrt(2 / ok.sum())


def test_generate_dataset_writes_layout_and_skips_when_matching(tmp_path):
    root = synth.generate_dataset(tmp_path / "d", n_train=2, n_test=1, size=(32, 48), seed=5)
    assert [d.name for d in layout.scene_dirs(root, "Training")] == ["000", "001"]
    scene = kalantari.read_scene(layout.scene_dirs(root, "Test")[0])
    assert scene.hdr.shape == (32, 48, 3) and scene.instances.shape == (32, 48)
    stamp = (root / "Training" / "000" / "HDRImg.hdr").stat().st_mtime_ns
    synth.generate_dataset(root, n_train=2, n_test=1, size=(32, 48), seed=5)
    assert (root / "Training" / "000" / "HDRImg.hdr").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="other settings"):
        synth.generate_dataset(root, n_train=3, n_test=1, size=(32, 48), seed=5)
