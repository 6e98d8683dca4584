"""Build the shipped real-content HDR views, ``semkt_plugin/assets/real/``, from CC0 Poly Haven panoramas.

The 1k equirectangular panoramas are read from a git clone (a bare mirror is enough) of
https://github.com/pmndrs/drei-assets at a fixed commit, ``hdri/<name>_1k.hdr``.  Each panorama gives VIEWS
pinhole views, FOV° wide, yaws evenly spaced from a per-panorama offset, pitches between -10° and 0° (the
poles of an equirectangular image are stretched); offsets and pitches are drawn from a generator seeded
with the CRC-32 of the panorama's name, so every view is fixed.  Views are rendered at SUPERSAMPLE × the
output size and box-averaged (in linear radiance), then written with our RLE RGBE writer as
``<name>_<k>.hdr`` together with ``README.md`` (source, licence, the command, the split).

Usage (the shipped assets were made with the defaults)::

    python scripts/make_real_views.py --repo /path/to/drei-assets
"""
from __future__ import annotations

import argparse
import subprocess
import zlib
from pathlib import Path

import numpy as np
from panorama import perspective_view  # scripts/panorama.py, beside this script

from semkt_plugin.reproduction.brackets import PANORAMAS
from semkt_plugin.reproduction.rgbe import decode_rgbe, write_rgbe

SOURCE = "https://github.com/pmndrs/drei-assets"
COMMIT = "456060a26bbeb8fdf79326f224b6d99b8bcce736"
VIEWS = 4
FOV = 80.0
SIZE = 192
SUPERSAMPLE = 2
PITCH = (-10.0, 0.0)

README = """\
# Real-content HDR views

{n} linear HDR views ({size}×{size}, Radiance RGBE, run-length encoded) of {p} equirectangular panoramas
from [Poly Haven](https://polyhaven.com), released under CC0 (https://polyhaven.com/license): no rights
reserved, free for any use.  `semkt_plugin.reproduction.brackets` turns them into Kalantari-style dynamic brackets.

Source: the 1k panoramas `hdri/<name>_1k.hdr` of {source} at commit `{commit}`.

Made with (from the repository root, with a clone or bare mirror of that repository):

    python scripts/make_real_views.py --repo /path/to/drei-assets

Each panorama gives {views} pinhole views with a field of view of {fov:g}°, yaws evenly spaced from an offset and
pitches in [{pitch0:g}°, {pitch1:g}°], both drawn from a generator seeded with the CRC-32 of the panorama's name;
each view is rendered at {ss}× the size and box-averaged in linear radiance.  No view was skipped.
Pixel values are the panoramas' own (arbitrary radiometric scale).

Split by panorama (fixed; never change it):

| split | panoramas |
|---|---|
{split_rows}

| file | yaw (°) | pitch (°) |
|---|---|---|
{view_rows}
"""


def view_angles(name: str) -> list[tuple[float, float]]:
    """(yaw, pitch) in degrees of each view of a panorama, fixed by its name."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    offset = rng.uniform(0, 360 / VIEWS)
    return [(offset + k * 360 / VIEWS, rng.uniform(*PITCH)) for k in range(VIEWS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, required=True, help="clone or bare mirror of drei-assets")
    parser.add_argument("--out", type=Path, default=Path("semkt_plugin/assets/real"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in sorted(n for names in PANORAMAS.values() for n in names):
        blob = subprocess.run(
            ["git", "-C", str(args.repo), "show", f"{COMMIT}:hdri/{name}_1k.hdr"], check=True, capture_output=True
        ).stdout
        pano = decode_rgbe(blob, f"{name}_1k.hdr")
        for k, (yaw, pitch) in enumerate(view_angles(name)):
            big = perspective_view(pano, yaw, pitch, FOV, SIZE * SUPERSAMPLE)
            view = big.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
            write_rgbe(args.out / f"{name}_{k}.hdr", view)
            rows.append(f"| {name}_{k}.hdr | {yaw:.1f} | {round(pitch, 1) + 0.0:.1f} |")  # + 0.0: no "-0.0"
    split_rows = "\n".join(f"| {split} | {', '.join(names)} |" for split, names in PANORAMAS.items())
    (args.out / "README.md").write_text(
        README.format(
            n=len(rows), size=SIZE, p=len(rows) // VIEWS, source=SOURCE, commit=COMMIT, views=VIEWS, fov=FOV,
            pitch0=PITCH[0], pitch1=PITCH[1], ss=SUPERSAMPLE, split_rows=split_rows, view_rows="\n".join(rows),
        )
    )


if __name__ == "__main__":
    main()
