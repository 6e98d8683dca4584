"""The on-disk layout every dataset reader and SMHDR agree on: Kalantari's split folders, one folder per scene,
and the global region IDs that tell scenes apart.

::

    <root>/Training/<scene>/   3 LDR .tif (short, reference, long), exposures.txt, HDRImg.hdr, masks.npy
    <root>/Test/<scene>/

A region ID is global across a split: ``scene index · SCENE_STRIDE + local ID``, the local ID being the uint16 of
the scene's ``masks.npy`` (0: no region).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .validation import check

SPLITS = ("Training", "Test")
SCENE_STRIDE = 65536  # one more than the largest uint16 local ID
REGION_MAP, REGION_FINGERPRINT = "masks.npy", "masks.json"


def scene_dirs(root: str | Path, split: str) -> list[Path]:
    """Sorted scene folders of ``<root>/<split>``, split being "Training" or "Test"."""
    check("split", split, one_of=SPLITS)
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: expected Kalantari layout <root>/{split}/<scene>/")
    return sorted(p for p in folder.iterdir() if p.is_dir())


def global_region_ids(local: np.ndarray, scene_index: int) -> np.ndarray:
    """``(H, W)`` int64 global IDs from a scene's ``(H, W)`` uint16 local IDs."""
    return local.astype(np.int64) + scene_index * SCENE_STRIDE


def scene_of(region_id: int) -> int:
    """The scene index a global region ID belongs to."""
    return region_id // SCENE_STRIDE
