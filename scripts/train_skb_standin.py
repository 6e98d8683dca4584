"""Train the offline stand-in for FastSAM: a class-agnostic YOLOv8n-seg on synthetic scenes.

FastSAM's released weights cannot be downloaded everywhere, so semkt ships a small
network of the same family (YOLOv8-seg, one class "object") trained with
ultralytics' own trainer on ``semkt_plugin.data.synth`` scenes.  The network sees what
the SKB sees in use: the mu-law tone-mapped HDR image
``T(H) = log(1 + 5000 H) / log(1 + 5000)``.  Labels are the scenes' instance
masks turned into YOLO polygons.

The dataset and ultralytics' run directory go to a temporary directory outside
the repository; only the final weights are written (``--out``), in semkt's SKB
state format (see ``semkt_plugin.skb``): a dict
``{"format": "semkt-skb", "arch": ..., "nc": 1, "state_dict": fp16 tensors}``,
loadable with ``torch.load(weights_only=True)``.

Usage (the shipped asset was made with the defaults)::

    python scripts/train_skb_standin.py --out semkt_plugin/assets/skb_standin.pt
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from semkt_plugin.domain import mu_law
from semkt_plugin.data.synth import make_scene

MIN_PIECE_AREA = 12  # px; smaller contour pieces are noise for a 256 px training image


def instance_polygons(instances: np.ndarray) -> list[np.ndarray]:
    """(H, W) int instance IDs (0 = background) -> list of (K, 2) polygons, x/y normalised to [0, 1].

    An instance cut in pieces by occlusion gives one polygon per piece (YOLO labels hold one
    polygon per object line).
    """
    h, w = instances.shape
    polygons = []
    for oid in np.unique(instances):
        if oid == 0:
            continue
        mask = (instances == oid).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            if len(c) >= 3 and cv2.contourArea(c) >= MIN_PIECE_AREA:
                polygons.append(c[:, 0, :].astype(np.float64) / (w, h))
    return polygons


def write_split(root: Path, split: str, seeds: range, size: int) -> None:
    """Write ``images/<split>/*.png`` (tone-mapped HDR) and ``labels/<split>/*.txt`` (YOLO polygons)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for seed in tqdm(seeds, desc=f"scenes ({split})"):
        scene = make_scene(seed, (size, size))
        img = np.round(mu_law(torch.from_numpy(scene.hdr)).numpy() * 255).astype(np.uint8)
        cv2.imwrite(str(root / "images" / split / f"{seed:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lines = ["0 " + " ".join(f"{v:.5f}" for v in p.reshape(-1)) for p in instance_polygons(scene.instances)]
        (root / "labels" / split / f"{seed:06d}.txt").write_text("\n".join(lines) + "\n" if lines else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("semkt_plugin/assets/skb_standin.pt"))
    parser.add_argument("--arch", default="yolov8n-seg.yaml", help="ultralytics YOLOv8-seg yaml (scale letter picks size)")
    parser.add_argument("--train-scenes", type=int, default=640)
    parser.add_argument("--val-scenes", type=int, default=48)
    parser.add_argument("--size", type=int, default=192, help="scene and training image size (px)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (ultralytics uses cores - 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="dataset + run dir (default: a temp dir)")
    args = parser.parse_args()

    for k, v in {"YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "true"}.items():
        os.environ.setdefault(k, v)
    torch.set_num_threads(args.threads)
    from ultralytics import YOLO  # heavy import with process-wide side effects; fine in a script

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="semkt_skb_standin_"))
    data_root = workdir / "data"
    start = time.time()
    # Validation seeds sit after the training ones; tests draw scenes from seeds >= 10**6.
    write_split(data_root, "train", range(args.seed, args.seed + args.train_scenes), args.size)
    val_start = args.seed + args.train_scenes
    write_split(data_root, "val", range(val_start, val_start + args.val_scenes), args.size)
    (data_root / "data.yaml").write_text(
        f"path: {data_root}\ntrain: images/train\nval: images/val\nnames:\n  0: object\n"
    )

    model = YOLO(args.arch, task="segment")
    model.train(
        data=str(data_root / "data.yaml"),
        epochs=args.epochs,
        imgsz=args.size,
        batch=args.batch,
        device="cpu",
        workers=1,
        pretrained=False,  # no download of COCO weights
        amp=False,  # the AMP check downloads a model
        plots=False,
        val=False,  # validate once, after the last epoch
        single_cls=True,
        close_mosaic=max(1, args.epochs // 4),
        seed=args.seed,
        project=str(workdir / "runs"),
        name="standin",
        exist_ok=True,
    )
    torch.set_num_threads(args.threads)  # ultralytics' select_device reset it to cores - 1
    trainer = model.trainer
    seg = trainer.metrics  # final validation on the val split
    net = (trainer.ema.ema if trainer.ema else trainer.model).float().eval()
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "semkt-skb",
            "arch": args.arch,
            "nc": 1,
            "state_dict": state,
            "meta": {
                "trained_on": f"semkt_plugin.data.synth scenes {args.seed}..{val_start - 1}, {args.size}px, mu-law",
                "epochs": args.epochs,
                "val_mask_mAP50": float(seg.get("metrics/mAP50(M)", float("nan"))),
                "val_mask_mAP50_95": float(seg.get("metrics/mAP50-95(M)", float("nan"))),
            },
        },
        args.out,
    )
    size_mb = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.2f} MiB) in {time.time() - start:.0f} s; val metrics: {seg}")
    print(f"dataset and ultralytics run left in {workdir}")


if __name__ == "__main__":
    main()
