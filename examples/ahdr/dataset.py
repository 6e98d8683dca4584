"""Kalantari-layout data for AHDRNet: three (6, H, W) frames ``concat(LDR, LDR**2.2 / t)`` and the HDR label."""
from __future__ import annotations

from pathlib import Path

from semkt_plugin.reproduction.kalantari import KalantariDataset


def training_set(data_dir: str | Path, crop: int, seed: int, regions: bool = False) -> KalantariDataset:
    """Random ``crop × crop`` patches of ``<data_dir>/Training`` with flips, as upstream trains, drawn from ``seed``;
    with ``regions``, each item also has its crop of the scene's region map (SMHDR's ``masks.npy``)."""
    return KalantariDataset(data_dir, "Training", crop=crop, augment=True, seed=seed, regions=regions)


def test_set(data_dir: str | Path) -> KalantariDataset:
    """Full images of ``<data_dir>/Test``."""
    return KalantariDataset(data_dir, "Test")
