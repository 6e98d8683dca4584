"""Region maps of Kalantari-layout scenes for SMHDR, cached on disk as SMHDR's ``masks.npy``.

SMHDR segments each training scene's reference (middle) LDR once with SAM and trains with the integer region IDs.
Here the SKB plays SAM's part: :func:`build_region_maps` runs it on each reference LDR, turns its soft region maps
into IDs and writes, next to the scene's files::

    <scene>/masks.npy    uint16 (H, W): 0 where no region covers the pixel, else 1 + the SKB region's index
    <scene>/masks.json   the fingerprint: shape, SHA-256 of the reference LDR, SKB name, number of regions

:func:`load_region_map` refuses a cache that does not belong to the scene's current reference LDR.
``KalantariDataset(..., regions=True)`` reads the maps and makes the IDs global: ``scene_index · SCENE_STRIDE +
local ID``, unique per scene and region, which is how ``strategy="smhdr"`` tells the scenes apart.

Unlike SMHDR's files (float32 ``(H, W, 1)``, IDs numbered across scenes, regions under 1000 pixels merged into
the background), ours hold per-scene IDs and keep every region the SKB finds; SMHDR's own ``masks.npy`` has no
fingerprint and is refused.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import tifffile
import torch
from torch import nn
from tqdm import tqdm

from ..layout import REGION_FINGERPRINT, REGION_MAP, SCENE_STRIDE, scene_dirs


class RegionCacheError(ValueError):
    """A scene's ``masks.npy`` is missing or does not belong to its reference LDR."""


def _reference_ldr(scene_dir: Path) -> np.ndarray:
    """The reference (middle, in sorted file name order) 16-bit LDR frame, ``(H, W, 3)`` uint16."""
    tifs = sorted(scene_dir.glob("*.tif"))
    if len(tifs) != 3:
        raise ValueError(f"{scene_dir} has {len(tifs)} .tif files, expected 3 (short, reference, long)")
    return tifffile.imread(tifs[1])


def _fingerprint(ldr: np.ndarray, skb_name: str, num_regions: int) -> dict:
    # the decoded pixels, not the file's bytes: re-saving the same image with other metadata keeps the cache valid
    digest = hashlib.sha256(np.ascontiguousarray(ldr).tobytes() + str((ldr.shape, ldr.dtype.str)).encode())
    return {"shape": list(ldr.shape[:2]), "reference_sha256": digest.hexdigest(), "skb": skb_name,
            "num_regions": num_regions}


def region_ids(regions: torch.Tensor, threshold: float = 0.5) -> np.ndarray:
    """Integer region IDs from soft region maps, as SMHDR turns SAM's masks into ``masks.npy``.

    A pixel belongs to region ``n`` where ``regions[n] > threshold``; regions are painted largest first, so a
    smaller region overwrites a larger one where they overlap (SMHDR sorts SAM's masks by area the same way).

    Args:
        regions: ``(N, H, W)`` soft maps in ``[0, 1]``.

    Returns:
        ``(H, W)`` uint16: 0 where no region covers the pixel, else ``1 + n``.
    """
    if regions.shape[0] >= SCENE_STRIDE:
        raise ValueError(f"{regions.shape[0]} regions do not fit uint16 IDs")
    binary = (regions > threshold).cpu()
    areas = binary.flatten(1).sum(1)
    ids = torch.zeros(binary.shape[1:], dtype=torch.int32)
    for n in torch.argsort(areas, descending=True, stable=True).tolist():
        if areas[n] > 0:
            ids[binary[n]] = 1 + n
    return ids.numpy().astype(np.uint16)


def _save_atomically(path: Path, write) -> None:
    # a reader (another rank, a crashed run) never sees half a file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def build_region_maps(root: str | Path, split: str = "Training", skb: nn.Module | None = None,
                      num_regions: int = 16, rebuild: bool = False, progress: bool = True) -> list[Path]:
    """Write ``masks.npy`` and ``masks.json`` into every scene of ``<root>/<split>``.

    A scene whose cache matches (same reference LDR, SKB name and number of regions) is skipped unless
    ``rebuild``.

    Args:
        root: the dataset root (Kalantari layout).
        split: ``"Training"`` or ``"Test"``.
        skb: the SKB (``(B, 3, H, W)`` in ``[0, 1]`` → ``SKBOutput`` with ``regions (B, N, H, W)``); ``None`` loads
            the offline stand-in, ``load_skb("standin", num_regions=num_regions)``. Its ``name`` attribute, else its
            class name, goes into the fingerprint.
        num_regions: N for the default SKB; a given SKB's own ``num_regions`` is used and recorded.
        rebuild: recompute every scene.
        progress: show a tqdm bar.

    Returns:
        The ``masks.npy`` path of every scene, in scene order.
    """
    dirs = scene_dirs(root, split)
    if skb is None:
        from ..skb import load_skb

        skb, skb_name = load_skb("standin", num_regions=num_regions), "standin"
    else:
        skb_name = str(getattr(skb, "name", type(skb).__name__))
    num_regions = int(getattr(skb, "num_regions", num_regions))
    device = next(iter(skb.parameters()), torch.empty(0)).device
    paths = []
    for scene in tqdm(dirs, desc="region maps", disable=not progress):
        path, meta = scene / REGION_MAP, scene / REGION_FINGERPRINT
        ldr = _reference_ldr(scene)
        fingerprint = _fingerprint(ldr, skb_name, num_regions)
        if not rebuild and path.exists() and meta.exists() and json.loads(meta.read_text()) == fingerprint:
            paths.append(path)
            continue
        x = torch.from_numpy(ldr.astype(np.float32) / 65535).permute(2, 0, 1)[None].to(device)
        with torch.no_grad():
            ids = region_ids(skb(x).regions[0])
        _save_atomically(path, lambda f, ids=ids: np.save(f, ids))
        _save_atomically(meta, lambda f, fingerprint=fingerprint: f.write(json.dumps(fingerprint, indent=1).encode()))
        paths.append(path)
    return paths


def load_region_map(scene_dir: str | Path, verify: bool = True) -> np.ndarray:
    """A scene's cached region IDs, checked against the scene.

    Args:
        scene_dir: the scene folder.
        verify: check the fingerprint against the reference LDR (reads and hashes it); ``False`` only reads the
            map and checks it against its fingerprint's shape (for per-item reads after one full check).

    Returns:
        ``(H, W)`` uint16 local IDs, 0 = no region.

    Raises:
        RegionCacheError: ``masks.npy`` or ``masks.json`` is missing, or they do not match the reference LDR.
    """
    scene_dir = Path(scene_dir)
    path, meta = scene_dir / REGION_MAP, scene_dir / REGION_FINGERPRINT
    fix = (f"run build_region_maps(root, split, rebuild=True) (or delete {path} and {meta.name}, then "
           "build_region_maps)")
    if not path.exists():
        raise RegionCacheError(f"{path} is missing: build the region maps first with build_region_maps(root, split)")
    if not meta.exists():
        raise RegionCacheError(f"{path} has no fingerprint {meta.name}, so it cannot be checked against the "
                               f"scene; {fix}")
    fingerprint = json.loads(meta.read_text())
    ids = np.load(path)
    if ids.ndim != 2 or list(ids.shape) != fingerprint["shape"]:
        raise RegionCacheError(f"{path} has shape {ids.shape} but its fingerprint says "
                               f"{tuple(fingerprint['shape'])}; {fix}")
    if verify:
        ldr = _reference_ldr(scene_dir)
        if ids.shape != ldr.shape[:2]:
            raise RegionCacheError(f"{path} has shape {ids.shape} but the scene's reference LDR is "
                                   f"{ldr.shape[:2]}; {fix}")
        if _fingerprint(ldr, fingerprint["skb"], fingerprint["num_regions"]) != fingerprint:
            raise RegionCacheError(f"{path} was built from another reference LDR than the scene's "
                                   f"({sorted(scene_dir.glob('*.tif'))[1].name} changed); {fix}")
    return ids
