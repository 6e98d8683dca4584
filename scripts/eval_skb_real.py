"""How well SKB weights segment real content: region maps vs "segment everything" masks on the validation views.

For each of the validation split's 8 shipped views (never trained on), tone-mapped as in training
(``train_skb_standin.view_image``), the classical masks are ``train_skb_standin.segment_everything``'s
(Felzenszwalb, object-sized segments).  Per view: the mean over masks of the best IoU any of the SKB's
``--regions`` binarised region maps (``> 0.5``) reaches, and how many region maps are non-empty.  A
random-init YOLOv8n-seg given all its best anchors (score threshold 0, seed 0) is the floor.  Also printed:
region precision, the mean over non-empty regions of the best IoU with any mask (junk regions lower it).

Needs scikit-image (``pip install scikit-image``).  The numbers and figure of docs/skb.md::

    git show f436cdb:semkt_plugin/assets/skb_standin.pt > /tmp/old_standin.pt
    python scripts/eval_skb_real.py /tmp/old_standin.pt standin --figure docs/skb_real.png
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import torch
from train_skb_standin import segment_everything, view_image  # the sibling script: same images and masks

from semkt_plugin.reproduction.brackets import real_view_paths
from semkt_plugin.reproduction.rgbe import read_rgbe
from semkt_plugin.skb import load_skb

FIGURE_VIEWS = (0, 3, 4, 7)  # two views of each validation panorama
MAX_FIGURE_BYTES = 300_000


def iou_matrix(regions: torch.Tensor, instances: np.ndarray) -> np.ndarray:
    """(N, H, W) soft region maps, (H, W) mask IDs (0 = none) -> (K masks, N regions) IoU of the binarised regions."""
    regions = regions > 0.5
    masks = torch.from_numpy(np.arange(1, instances.max() + 1)[:, None, None] == instances)
    inter = (masks[:, None] & regions[None]).flatten(2).sum(2)
    union = (masks[:, None] | regions[None]).flatten(2).sum(2)
    return (inter / union.clamp(min=1)).numpy()


def argmax_overlay(image: np.ndarray, regions: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image, (N, H, W) regions -> each pixel tinted by its strongest region above 0.5, if any."""
    label = regions.argmax(0)
    covered = regions.max(0) > 0.5
    tint = colours[label % len(colours)]
    return np.where(covered[..., None], 0.4 * image + 0.6 * tint, image).astype(np.uint8)


def masks_as_regions(instances: np.ndarray) -> np.ndarray:
    """(H, W) IDs -> (K, H, W) one-hot float maps, so the classical masks are drawn like the SKB's regions."""
    return (np.arange(1, instances.max() + 1)[:, None, None] == instances).astype(np.float32)


def write_figure(path: Path, images: list[np.ndarray], columns: dict[str, list[np.ndarray]]) -> None:
    """Rows: views; columns: the image, then each set of region maps as an argmax overlay.  PNG, palette-quantised."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    colours = (plt.get_cmap("tab20")(np.arange(20))[:, :3] * 255).astype(np.float32)
    titles = ["tone-mapped view", *columns]
    fig, axes = plt.subplots(len(images), len(titles), figsize=(2.2 * len(titles), 2.2 * len(images)), squeeze=False)
    for r, image in enumerate(images):
        tiles = [image] + [argmax_overlay(image, maps[r], colours) for maps in columns.values()]
        for c, tile in enumerate(tiles):
            axes[r, c].imshow(tile)
            axes[r, c].set_axis_off()
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    # 256-colour palette: a photo grid as RGB PNG is ~1 MB, the palette version a fraction of it
    Image.open(buf).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if path.stat().st_size > MAX_FIGURE_BYTES:
        raise RuntimeError(f"{path} is {path.stat().st_size} bytes, over the {MAX_FIGURE_BYTES} budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="SKB weights (a path or 'standin'), e.g. the old and new stand-in")
    parser.add_argument("--regions", type=int, default=16, help="N region maps (semkt's SKTConfig.num_regions default)")
    parser.add_argument("--figure", type=Path, default=None, help="write the first two weights' region maps here")
    args = parser.parse_args()
    if args.figure and len(args.weights) < 2:
        parser.error("--figure compares two weights: pass the old stand-in, then the new one")
    torch.set_num_threads(2)

    paths = real_view_paths("validation")
    images = [view_image(read_rgbe(p)) for p in paths]
    masks = [segment_everything(im) for im in images]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    print(f"classical masks per view: {[int(m.max()) for m in masks]}")

    torch.manual_seed(0)
    floor = load_skb(None, arch="yolov8n-seg.yaml", num_regions=args.regions)
    floor.score_threshold = 0.0  # its scores never pass 0.25: give it all its best anchors
    runs = {"random init (threshold 0)": floor, **{w: load_skb(w, num_regions=args.regions) for w in args.weights}}
    regions = {}
    for name, skb in runs.items():
        with torch.no_grad():
            regions[name] = skb(x).regions
        ious = [iou_matrix(r, m) for r, m in zip(regions[name], masks)]
        nonempty = [(r.flatten(1).amax(1) > 0).numpy() for r in regions[name]]
        per_view = [iou.max(1).mean() for iou in ious]
        precision = np.concatenate([iou.max(0)[ne] for iou, ne in zip(ious, nonempty)])
        found = [int(ne.sum()) for ne in nonempty]
        print(
            f"{name}: mean best IoU {np.mean(per_view):.3f} (per view {' '.join(f'{v:.2f}' for v in per_view)}); "
            f"regions found {np.mean(found):.1f} (per view {found}); region precision {precision.mean():.3f}"
        )
    if args.figure:
        old, new = args.weights[:2]
        pick = list(FIGURE_VIEWS)
        columns = {
            "old stand-in (synthetic)": [regions[old][i].numpy() for i in pick],
            "new stand-in (real)": [regions[new][i].numpy() for i in pick],
            "classical masks": [masks_as_regions(masks[i]) for i in pick],
        }
        write_figure(args.figure, [images[i] for i in pick], columns)
        print(f"wrote {args.figure} ({args.figure.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
