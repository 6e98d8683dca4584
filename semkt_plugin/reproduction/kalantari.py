"""Kalantari & Ramamoorthi (SIGGRAPH 2017) dataset layout: reader, writer and an AHDR-style ``Dataset``.

Layout, as read by upstream AHDRNet (``GenerH5Data``) and HDR-Transformer (``dataset_sig17.py``)::

    <root>/Training|Test/<scene>/
        *.tif          three 16-bit RGB LDR frames; sorted file name order = short, reference, long
        exposure.txt   one number per line: stops relative to the shortest (e.g. 0 2 4); exposure = 2**stops
        HDRImg.hdr     Radiance RGBE, linear, aligned with the reference frame,
                       radiometrically at the shortest frame's scale (LDR ≈ clip(HDR * exposure) ** (1 / 2.2))
        instances.png  (ours, optional) uint16 object IDs in the reference frame, 0 = background

LDR values are ``tif / 65535`` (Matlab ``im2single``, which AHDRNet uses; HDR-Transformer divides by 2**16,
1.5e-5 less).  ``.hdr`` files are read and written with OpenCV, which stores BGR: we convert to RGB.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch
from torch.utils.data import Dataset, get_worker_info

from ..layout import REGION_MAP, global_region_ids, scene_dirs
from .regions import RegionCacheError, load_region_map

GAMMA = 2.2


@dataclass
class KalantariScene:
    """One scene as stored on disk.

    ldrs: 3 × (H, W, 3) float32 in [0, 1], RGB, short / reference / long.
    stops: (3,) float64 stops relative to the shortest; exposure = 2**stops.
    hdr: (H, W, 3) float32 linear RGB, or None if the scene has no ``HDRImg.hdr``.
    instances: (H, W) int32 object IDs, or None if the scene has no ``instances.png``.
    """

    name: str
    ldrs: list[np.ndarray]
    stops: np.ndarray
    hdr: np.ndarray | None
    instances: np.ndarray | None


def read_hdr(path: str | Path) -> np.ndarray:
    """Read a Radiance RGBE file as (H, W, 3) float32 linear RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgr is None:
        raise FileNotFoundError(f"cannot read Radiance HDR file {path}")
    return np.ascontiguousarray(bgr[..., ::-1], dtype=np.float32)


def write_hdr(path: str | Path, hdr: np.ndarray) -> None:
    """Write (H, W, 3) linear RGB as Radiance RGBE (8-bit shared-exponent precision)."""
    if hdr.ndim != 3 or hdr.shape[2] != 3:
        raise ValueError(f"write_hdr needs an (H, W, 3) image, got shape {hdr.shape}")
    bgr = np.ascontiguousarray(np.clip(hdr, 0, None)[..., ::-1], dtype=np.float32)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"OpenCV failed to write {path}")


def read_scene(scene_dir: str | Path) -> KalantariScene:
    """Read one scene folder; ``HDRImg.hdr`` and ``instances.png`` are optional."""
    scene_dir = Path(scene_dir)
    tifs = sorted(scene_dir.glob("*.tif"))
    if len(tifs) != 3:
        raise ValueError(f"{scene_dir} has {len(tifs)} .tif files, expected 3 (short, reference, long)")
    ldrs = []
    for tif in tifs:
        img = tifffile.imread(tif)
        if img.dtype != np.uint16 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{tif} is {img.dtype} {img.shape}, expected 16-bit RGB (H, W, 3)")
        ldrs.append(img.astype(np.float32) / 65535)
    stops = np.loadtxt(scene_dir / "exposure.txt", ndmin=1)
    if stops.shape != (3,):
        raise ValueError(f"{scene_dir / 'exposure.txt'} holds {stops.size} values, expected 3 (one per line)")
    hdr_path, ids_path = scene_dir / "HDRImg.hdr", scene_dir / "instances.png"
    hdr = read_hdr(hdr_path) if hdr_path.exists() else None
    instances = cv2.imread(str(ids_path), cv2.IMREAD_UNCHANGED).astype(np.int32) if ids_path.exists() else None
    return KalantariScene(scene_dir.name, ldrs, stops, hdr, instances)


def write_scene(
    scene_dir: str | Path,
    ldrs: list[np.ndarray],
    stops: list[float] | np.ndarray,
    hdr: np.ndarray | None = None,
    instances: np.ndarray | None = None,
) -> Path:
    """Write one scene folder in Kalantari's layout.

    Args:
        ldrs: 3 × (H, W, 3) float in [0, 1], RGB, short / reference / long; stored as 16-bit tif.
        stops: 3 stops relative to the shortest.
        hdr: (H, W, 3) linear RGB at the shortest frame's scale, stored as ``HDRImg.hdr``.
        instances: (H, W) int object IDs in [0, 65535], stored as uint16 ``instances.png``.
    """
    if len(ldrs) != 3 or len(stops) != 3:
        raise ValueError(f"a scene has 3 LDR frames and 3 stops, got {len(ldrs)} and {len(stops)}")
    scene_dir = Path(scene_dir)
    scene_dir.mkdir(parents=True, exist_ok=True)
    for k, ldr in enumerate(ldrs, start=1):
        tifffile.imwrite(scene_dir / f"ldr_{k}.tif", np.round(np.clip(ldr, 0, 1) * 65535).astype(np.uint16))
    (scene_dir / "exposure.txt").write_text("".join(f"{float(s):g}\n" for s in stops))
    if hdr is not None:
        write_hdr(scene_dir / "HDRImg.hdr", hdr)
    if instances is not None:
        if instances.min() < 0 or instances.max() > 65535:
            raise ValueError("instance IDs must lie in [0, 65535] to fit a uint16 PNG")
        cv2.imwrite(str(scene_dir / "instances.png"), instances.astype(np.uint16))
    return scene_dir


def ahdr_inputs(ldrs: list[np.ndarray], stops: np.ndarray) -> list[np.ndarray]:
    """AHDRNet's inputs: 3 × (6, H, W) float32 ``concat(LDR, LDR**2.2 / 2**stop)`` from 3 × (H, W, 3) LDRs."""
    return [
        np.ascontiguousarray(np.concatenate([ldr, ldr**GAMMA / 2.0**stop], axis=2).transpose(2, 0, 1), np.float32)
        for ldr, stop in zip(ldrs, stops)
    ]


class KalantariDataset(Dataset):
    """Scenes of ``<root>/<split>`` as ``(x1, x2, x3, hdr)``: three (6, H, W) AHDR inputs and the (3, H, W) label.

    With ``crop`` set, each item is a random ``crop × crop`` patch, randomly flipped / rotated by 180°
    when ``augment`` (AHDRNet's geometric augmentation).  Scenes are read from disk per item: the real
    dataset (74 scenes of 1000×1500) would take several GB in memory.

    Crops and flips come from the dataset's own generator seeded with ``seed`` (None: fresh entropy), not
    from the global RNGs, so code that draws random numbers elsewhere (e.g. building extra modules) does not
    change the data.  In DataLoader workers the generator is re-seeded from the worker's seed, which the
    DataLoader derives from its own ``generator`` per epoch and worker.

    With ``regions=True`` each item also holds the scene's cached region map (``masks.npy``, see
    :mod:`semkt_plugin.reproduction.regions`) as ``(H, W)`` int64 global IDs (:mod:`semkt_plugin.layout`), cropped and
    flipped with the images; every scene's cache is checked against its reference LDR when the dataset is built.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "Training",
        crop: int | None = None,
        augment: bool = False,
        seed: int | None = None,
        regions: bool = False,
    ):
        self.dirs = scene_dirs(root, split)
        if not self.dirs:
            raise ValueError(f"no scenes in {Path(root) / split}")
        missing = [d.name for d in self.dirs if not (d / "HDRImg.hdr").exists()]
        if missing:
            raise ValueError(f"scenes without HDRImg.hdr in {Path(root) / split}: {missing}")
        self.names = [d.name for d in self.dirs]
        self.crop, self.augment, self.regions = crop, augment, regions
        if regions:
            for d in self.dirs:  # fail here, not in a DataLoader worker halfway through an epoch
                load_region_map(d)
        self._rng, self._rng_key = np.random.default_rng(seed), None

    def __len__(self) -> int:
        return len(self.dirs)

    def _generator(self) -> np.random.Generator:
        worker = get_worker_info()
        if worker is not None and self._rng_key != worker.seed:
            self._rng, self._rng_key = np.random.default_rng(worker.seed), worker.seed
        return self._rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        scene = read_scene(self.dirs[index])
        images = [*scene.ldrs, scene.hdr]  # (H, W, 3) each, cropped and flipped together
        if self.regions:
            images.append(self._region_map(index, scene.hdr.shape[:2]))
        rng = self._generator()
        if self.crop is not None:
            h, w = scene.hdr.shape[:2]
            if self.crop > min(h, w):
                raise ValueError(f"crop {self.crop} exceeds scene size {h}×{w}: use a smaller crop")
            top, left = rng.integers(0, h - self.crop + 1), rng.integers(0, w - self.crop + 1)
            images = [img[top : top + self.crop, left : left + self.crop] for img in images]
        if self.augment:
            if rng.random() < 0.5:
                images = [img[:, ::-1] for img in images]
            if rng.random() < 0.5:
                images = [img[::-1] for img in images]
        ids = images.pop() if self.regions else None
        *ldrs, hdr = images
        frames = [torch.from_numpy(x) for x in ahdr_inputs(ldrs, scene.stops)]
        item = (*frames, torch.from_numpy(np.ascontiguousarray(hdr.transpose(2, 0, 1))))
        return item if ids is None else (*item, torch.from_numpy(np.ascontiguousarray(ids)))

    def _region_map(self, index: int, shape: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` int64 global region IDs of scene ``index``."""
        ids = load_region_map(self.dirs[index], verify=False)  # verified against the LDR in __init__
        if ids.shape != shape:
            raise RegionCacheError(f"{self.dirs[index] / REGION_MAP} has shape {ids.shape}, the scene {shape}; "
                                   "run build_region_maps(root, split, rebuild=True)")
        return global_region_ids(ids, index)
