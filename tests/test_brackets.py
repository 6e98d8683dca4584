"""Real-content brackets: alignment with the ground truth, the capture model, determinism, splits, the dataset."""
import json

import numpy as np
import pytest
import tifffile

from semkt_plugin import layout
from semkt_plugin.reproduction import brackets, kalantari
from semkt_plugin.reproduction.brackets import PANORAMAS, generate_real_dataset, make_bracket, real_view_paths
from semkt_plugin.reproduction.rgbe import read_rgbe
from semkt_plugin.reproduction.synth import GAMMA, READ, SHOT


@pytest.fixture(scope="module")
def train_views():
    return [read_rgbe(p) for p in real_view_paths("train")]


def _misfit(scene, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Where frame f is neither clipped nor buried in noise (from the ground truth), and where its linearised
    values miss ``hdr · 2**stop`` by more than 5 noise stds plus half an 8-bit step (through the gamma curve)."""
    x = scene.hdr.astype(np.float64) * 2.0 ** scene.stops[f]
    sd = np.sqrt(SHOT * x + READ**2)
    ldr = scene.ldrs[f].astype(np.float64)
    half_step = GAMMA * (ldr + 0.5 / 255) ** (GAMMA - 1) * 0.5 / 255
    usable = (x - 5 * sd > 0.01) & (x + 5 * sd < 1)
    return usable, usable & (np.abs(ldr**GAMMA - x) > 5 * sd + half_step)


@pytest.mark.parametrize("index, seed", [(0, 0), (13, 1), (30, 2)])
def test_ground_truth_is_the_reference_frame(train_views, index, seed):
    donors = train_views[:index] + train_views[index + 1 :]
    s = make_bracket(train_views[index], donors, seed)
    assert s.hdr.shape == (176, 176, 3) and s.hdr.dtype == np.float32 and s.stops == (0.0, 2.0, 4.0)
    assert 0 <= s.hdr.min() and s.hdr.max() <= 1
    usable, wrong = _misfit(s, 1)
    assert usable.mean() > 0.3 and wrong.sum() <= 3
    np.testing.assert_array_equal(s.frame_instances[1], s.instances)
    assert s.instances.max() >= 1  # at least one moving object
    for f in (0, 2):  # objects move and the camera shakes: the other frames do not fit the ground truth
        assert not np.array_equal(s.frame_instances[f], s.instances)
        assert _misfit(s, f)[1].mean() > 20 * wrong.mean() + 0.01


def test_static_bracket_aligns_and_exposures_step_by_four(train_views):
    s = make_bracket(train_views[5], train_views[6:9], 3, motion=False)
    assert (s.frame_instances == s.instances).all()
    for f in range(3):
        usable, wrong = _misfit(s, f)
        assert usable.mean() > 0.2 and wrong.sum() <= 3
    gt = s.hdr.astype(np.float64)
    linear = [ldr.astype(np.float64) ** GAMMA for ldr in s.ldrs]
    for f in range(2):  # both frames unclipped and well above the noise floor (decided on the ground truth)
        ok = (gt * 2.0 ** s.stops[f] > 0.02) & (gt * 2.0 ** s.stops[f + 1] < 0.8)
        assert ok.mean() > 0.1
        assert linear[f + 1][ok].mean() / linear[f][ok].mean() == pytest.approx(4, rel=0.01)


def test_long_frame_clips_and_values_are_8_bit(train_views):
    s = make_bracket(train_views[1], train_views[2:5], 4, motion=False)
    x = s.hdr.astype(np.float64) * 2.0 ** s.stops[2]
    surely_over = x - 5 * np.sqrt(SHOT + READ**2) > 1
    assert surely_over.mean() > 0.05
    assert (s.ldrs[2][surely_over] == 1.0).all()
    for ldr in s.ldrs:
        assert ldr.dtype == np.float32 and 0 <= ldr.min() and ldr.max() <= 1
        assert np.abs(ldr * 255 - np.round(ldr * 255)).max() < 1e-3


def test_same_seed_same_arrays(train_views):
    a, b, c = (make_bracket(train_views[7], train_views[:7], seed, size=64) for seed in (5, 5, 6))
    for x, y in zip([a.hdr, *a.ldrs, a.frame_instances], [b.hdr, *b.ldrs, b.frame_instances]):
        np.testing.assert_array_equal(x, y)
    assert a.hdr.shape == (64, 64, 3) and not np.array_equal(a.ldrs[1], c.ldrs[1])


def test_bad_arguments(train_views):
    with pytest.raises(ValueError, match=r"size must lie in \[16, 176\]"):
        make_bracket(train_views[0], train_views[1:], 0, size=180)
    with pytest.raises(ValueError, match="donor"):
        make_bracket(train_views[0], [], 0)
    with pytest.raises(ValueError, match="eval_split"):
        generate_real_dataset("unused", "train")


def test_split_is_fixed_and_views_are_shipped():
    assert set(PANORAMAS["test"]) == {"potsdamer_platz", "st_fagans_interior"}
    assert set(PANORAMAS["validation"]) == {"forest_slope", "venice_sunset"}
    names = [n for split in PANORAMAS.values() for n in split]
    assert len(names) == len(set(names)) == 12
    for split, panoramas in PANORAMAS.items():
        paths = real_view_paths(split)
        assert len(paths) == 4 * len(panoramas)
        assert {p.stem.rsplit("_", 1)[0] for p in paths} == set(panoramas)
    with pytest.raises(ValueError, match="split must be one of"):
        real_view_paths("Training")


def test_missing_assets_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(brackets, "ASSETS", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_real_views.py"):
        real_view_paths("test")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A small dataset (Test/ = the test split), with the view and donors of every bracket recorded."""
    fingerprint = {float(read_rgbe(p).sum()): p.stem for split in PANORAMAS for p in real_view_paths(split)}
    calls = []

    def spy(view, donors, seed, size=None, motion=True):
        calls.append((fingerprint[float(view.sum())], [fingerprint[float(d.sum())] for d in donors]))
        return make_bracket(view, donors, seed, size, motion)

    root = tmp_path_factory.mktemp("real") / "test"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(brackets, "make_bracket", spy)
        generate_real_dataset(root, "test", size=32, seed=3)
    return root, calls


def _panorama(stem: str) -> str:
    return stem.rsplit("_", 1)[0]


def test_splits_never_mix(dataset):
    root, calls = dataset
    assert len(calls) == 40
    for view, donors in calls:  # objects are textured from the same split only, never from the view itself
        split = next(s for s, names in PANORAMAS.items() if _panorama(view) in names)
        assert view not in donors and {_panorama(d) for d in donors} <= set(PANORAMAS[split])
    folders = {folder: [d.name for d in layout.scene_dirs(root, folder)] for folder in layout.SPLITS}
    assert {_panorama(_panorama(n)) for n in folders["Training"]} == set(PANORAMAS["train"])
    assert {_panorama(_panorama(n)) for n in folders["Test"]} == set(PANORAMAS["test"])
    assert json.loads((root / "real.json").read_text())["eval_split"] == "test"


def test_scenes_on_disk_keep_the_convention(dataset):
    root, _ = dataset
    scene_dir = layout.scene_dirs(root, "Test")[0]
    scene = kalantari.read_scene(scene_dir)
    assert scene.hdr.shape == (32, 32, 3) and scene.instances.shape == (32, 32)
    np.testing.assert_array_equal(scene.stops, [0, 2, 4])
    assert all((tifffile.imread(p) % 257 == 0).all() for p in sorted(scene_dir.glob("*.tif")))  # 8-bit levels
    assert 0 <= scene.hdr.min() and scene.hdr.max() <= 1


def test_manifest_reuse_and_mismatch(dataset, tmp_path):
    root, _ = dataset
    stamp = (root / "Test" / "potsdamer_platz_0_0" / "HDRImg.hdr").stat().st_mtime_ns
    assert generate_real_dataset(root, "test", size=32, seed=3) == root
    assert (root / "Test" / "potsdamer_platz_0_0" / "HDRImg.hdr").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match=r"eval_split='test' \(asked 'validation'\), views"):
        generate_real_dataset(root, "validation", size=32, seed=3)
    with pytest.raises(FileExistsError, match=r"seed=3 \(asked 4\)"):
        generate_real_dataset(root, "test", size=32, seed=4)
    (tmp_path / "stray").touch()
    with pytest.raises(FileExistsError, match="no real.json"):
        generate_real_dataset(tmp_path, "test", size=32)


def test_training_scenes_do_not_depend_on_the_evaluation_split(dataset, tmp_path):
    root, _ = dataset
    other = generate_real_dataset(tmp_path / "validation", "validation", size=32, seed=3)
    assert {d.name for d in layout.scene_dirs(other, "Test")} == {
        f"{p.stem}_0" for p in real_view_paths("validation")
    }
    for a, b in zip(layout.scene_dirs(root, "Training"), layout.scene_dirs(other, "Training")):
        assert a.name == b.name
        np.testing.assert_array_equal(kalantari.read_scene(a).ldrs[0], kalantari.read_scene(b).ldrs[0])


def test_a_dataset_another_process_publishes_first_is_the_one_used(tmp_path, monkeypatch):
    root, real = tmp_path / "data", brackets.make_bracket
    raced = []

    def other_process_finishes_first(*args, **kwargs):
        if not raced:  # while this call builds its copy, a parallel seed's process publishes the same dataset
            raced.append(True)
            generate_real_dataset(root, "test", size=32, seed=3)
        return real(*args, **kwargs)

    monkeypatch.setattr(brackets, "make_bracket", other_process_finishes_first)
    assert generate_real_dataset(root, "test", size=32, seed=3) == root
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # the losing copy is removed
    assert len(layout.scene_dirs(root, "Training")) + len(layout.scene_dirs(root, "Test")) == 40
    assert json.loads((root / "real.json").read_text())["seed"] == 3
