"""Train the offline stand-in for FastSAM: a class-agnostic YOLOv8n-seg on real content, "segment everything".

FastSAM's released weights cannot be downloaded everywhere, so semkt ships a small network of the same
family (YOLOv8-seg, one class "object") trained with ultralytics' own trainer.  FastSAM learnt to segment
everything from SAM's automatic masks; this stand-in learns it from a classical segmenter's masks over real
content, the train split's shipped HDR views (``semkt_plugin.reproduction.brackets``; never the validation or test
views):

- Images: what the SKB sees in use, the mu-law tone-mapped HDR ``T(H) = log(1 + 5000 H) / log(1 + 5000)``
  at the dataset's scale.  Per train view: the whole view (scaled so its 99.9th percentile is 1) and
  ``--brackets`` ground truths of ``make_bracket`` (random crop size and exposure, 1-3 pasted blobs
  textured with other train views).
- Masks ("segment everything"): Felzenszwalb's graph segmentation of the tone-mapped image, keeping the
  object-sized segments (1 % to 40 % of the image: no specks, no whole-sky / whole-floor backgrounds), with
  the pasted blobs as instances of their own on top.  Labels are YOLO polygons, one per connected piece.
- Training: fine-tuned from the previous, synthetic-scene stand-in (``--init``; its backbone already knows
  edges, which saves epochs), ultralytics' own augmentation (mosaic, random scale / translation, flips,
  HSV), CPU.  ultralytics' final validation runs on the validation views (evaluation only: the weights
  are the last epoch's EMA, not selected on it).

The dataset and ultralytics' run directory go to a temporary directory outside the repository; only the
final weights are written (``--out``), in semkt's SKB state format (see ``semkt_plugin.skb``): a dict
``{"format": "semkt-skb", "arch": ..., "nc": 1, "state_dict": fp16 tensors, "meta": {...}}``, loadable with
``torch.load(weights_only=True)``.

After training, the class-score bias is raised so that the SKB's fixed score threshold lets through as many
regions on the train views as the segmenter finds (:func:`calibrate_scores`).  The whole run takes about 9 min on
2 busy CPU cores.

Needs scikit-image (``pip install scikit-image``).  The shipped asset was made with the defaults, fine-tuned from
the synthetic-scene stand-in of commit f436cdb (without ``--init``, training starts from scratch)::

    git show f436cdb:semkt_plugin/assets/skb_standin.pt > /tmp/old_standin.pt
    python scripts/train_skb_standin.py --init /tmp/old_standin.pt --out semkt_plugin/assets/skb_standin.pt
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from semkt_plugin.domain import mu_law
from semkt_plugin.reproduction.brackets import make_bracket, real_view_paths
from semkt_plugin.reproduction.rgbe import read_rgbe

HIGHLIGHT_PERCENTILE = 99.9  # a whole view is scaled so that this percentile of its largest channel is 1
FZ_SCALE, FZ_SIGMA = 200.0, 0.8  # Felzenszwalb at 192 px: tens of segments that follow object outlines
FZ_MIN_SIZE = 100 / 192**2  # smallest segment, as a fraction of the image (scales with the crop)
REGION_AREA = (0.01, 0.4)  # kept segments, fraction of the image: objects, not specks nor whole backgrounds
MIN_PIECE = 0.002  # fraction of the image; smaller pieces of an occluded segment are not labelled
CROP_SIZE = (96, 176)  # side of make_bracket's scene (176: the whole view minus its shake margin)


def tone_map(hdr: np.ndarray) -> np.ndarray:
    """(H, W, 3) linear HDR at the dataset's scale -> (H, W, 3) uint8 mu-law image, what the SKB sees."""
    t = mu_law(torch.from_numpy(np.minimum(hdr, 1).astype(np.float32))).numpy()
    return np.round(t * 255).astype(np.uint8)


def view_image(view: np.ndarray) -> np.ndarray:
    """A whole shipped view (radiance, arbitrary scale) -> its uint8 tone-mapped image, 99.9th percentile at 1."""
    return tone_map(view / np.percentile(view.max(axis=2), HIGHLIGHT_PERCENTILE))


def segment_everything(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 tone-mapped image -> (H, W) int32 region IDs (0 = unlabelled), the "segment everything" masks.

    Felzenszwalb's graph segmentation (scikit-image), then only segments covering ``REGION_AREA`` of the
    image are kept, renumbered 1..K by decreasing area.
    """
    from skimage.segmentation import felzenszwalb

    min_size = max(1, round(FZ_MIN_SIZE * image.shape[0] * image.shape[1]))
    segments = felzenszwalb(image, scale=FZ_SCALE, sigma=FZ_SIGMA, min_size=min_size)
    area = np.bincount(segments.ravel()) / segments.size
    kept = np.flatnonzero((area >= REGION_AREA[0]) & (area <= REGION_AREA[1]))
    kept = kept[np.argsort(-area[kept], kind="stable")]
    lut = np.zeros(len(area), np.int32)
    lut[kept] = np.arange(1, len(kept) + 1)
    return lut[segments]


def instance_polygons(instances: np.ndarray, min_area: float) -> list[np.ndarray]:
    """(H, W) int instance IDs (0 = background) -> list of (K, 2) polygons, x/y normalised to [0, 1].

    An instance cut in pieces (by an occluding blob) gives one polygon per piece of at least ``min_area`` px
    (YOLO labels hold one polygon per object line).
    """
    h, w = instances.shape
    polygons = []
    for oid in np.unique(instances):
        if oid == 0:
            continue
        mask = (instances == oid).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            if len(c) >= 3 and cv2.contourArea(c) >= min_area:
                polygons.append(c[:, 0, :].astype(np.float64) / (w, h))
    return polygons


def write_sample(root: Path, split: str, name: str, image: np.ndarray, instances: np.ndarray) -> None:
    """Write ``images/<split>/<name>.png`` and its YOLO polygon labels ``labels/<split>/<name>.txt``."""
    cv2.imwrite(str(root / "images" / split / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    polygons = instance_polygons(instances, MIN_PIECE * instances.size)
    lines = ["0 " + " ".join(f"{v:.5f}" for v in p.reshape(-1)) for p in polygons]
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n" if lines else "")


def write_dataset(root: Path, brackets: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Train split: whole views + brackets; val split: the validation views.

    Returns the train views' whole images and their mask counts (for :func:`calibrate_scores`).
    """
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for path in real_view_paths("validation"):
        image = view_image(read_rgbe(path))
        write_sample(root, "val", path.stem, image, segment_everything(image))

    paths = real_view_paths("train")
    views = [read_rgbe(p) for p in paths]
    rng = np.random.default_rng(seed)
    whole, counts = [], []
    for i, (path, view) in enumerate(tqdm(list(zip(paths, views)), desc="train views")):
        image = view_image(view)
        regions = segment_everything(image)
        write_sample(root, "train", path.stem, image, regions)
        whole.append(image)
        counts.append(int(regions.max()))
        donors = views[:i] + views[i + 1 :]
        for b in range(brackets):
            scene = make_bracket(view, donors, int(rng.integers(2**31)),
                                 size=int(rng.integers(*CROP_SIZE, endpoint=True)))
            image = tone_map(scene.hdr)
            regions = segment_everything(image)
            blobs = scene.instances > 0  # the pasted objects occlude the segments and are instances themselves
            regions[blobs] = regions.max() + scene.instances[blobs]
            write_sample(root, "train", f"{path.stem}_b{b:02d}", image, regions)
    return whole, counts


def calibrate_scores(net: torch.nn.Module, images: list[np.ndarray], counts: list[int], num_regions: int = 16) -> float:
    """Raise ``net``'s class-score bias so the SKB finds as many regions on ``images`` as the segmenter:
    returns the shift.

    A few CPU epochs leave the scores under-confident: the ranking of anchors already follows the content,
    but few distinct objects pass the SKB's fixed score threshold.  Adding ``b`` to every class logit is
    the same as lowering that threshold for this network alone (ranking and deduplication are unchanged);
    ``b`` is found by bisection so that the mean number of non-empty regions on ``images`` (the train
    views) reaches the mean of ``counts`` (the classical masks per image, capped at ``num_regions``).
    """
    from semkt_plugin.skb import SemanticKnowledgeBank

    skb = SemanticKnowledgeBank(copy.deepcopy(net), num_regions=num_regions)
    default = torch.logit(torch.tensor(skb.score_threshold)).item()
    target = np.mean(np.minimum(counts, num_regions))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255

    def found(threshold_logit: float) -> float:
        skb.score_threshold = torch.sigmoid(torch.tensor(threshold_logit)).item()
        with torch.no_grad():
            return (skb(x).regions.flatten(2).amax(2) > 0).sum(1).float().mean().item()

    if found(default) >= target:
        return 0.0
    lo, hi = default - 6, default  # found(lo) >= target > found(hi): the count only grows as the threshold falls
    for _ in range(8):  # 6 / 2**8 logits: finer than the count can tell apart
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if found(mid) >= target else (lo, mid)
    shift = default - lo
    for branch in net.model[-1].cv3:  # the last conv of each level's class branch gives the logits
        branch[-1].bias.data += shift
    return shift


def ultralytics_checkpoint(weights: Path, arch: str, dest: Path) -> Path:
    """A semkt-skb file -> an ultralytics checkpoint ``{"model": net}`` that the trainer's ``pretrained=`` reads."""
    from ultralytics.nn.tasks import SegmentationModel

    obj = torch.load(weights, map_location="cpu", weights_only=True)
    if obj.get("format") != "semkt-skb" or obj["arch"] != arch:
        raise ValueError(f"--init {weights} is not a semkt-skb file of {arch}")
    net = SegmentationModel(arch, nc=obj["nc"], verbose=False)
    net.load_state_dict({k: v.float() for k, v in obj["state_dict"].items()})
    torch.save({"model": net, "train_args": {}}, dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("semkt_plugin/assets/skb_standin.pt"))
    parser.add_argument("--init", default="", help="semkt-skb weights to fine-tune from ('' = from scratch)")
    parser.add_argument("--arch", default="yolov8n-seg.yaml",
                        help="ultralytics YOLOv8-seg yaml (scale letter picks size)")
    parser.add_argument("--brackets", type=int, default=10, help="make_bracket scenes per train view")
    parser.add_argument("--size", type=int, default=192, help="training image size (px)")
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="dataset + run dir (default: a temp dir)")
    args = parser.parse_args()

    for k, v in {"YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "true"}.items():
        os.environ.setdefault(k, v)
    torch.set_num_threads(args.threads)
    from ultralytics import YOLO  # heavy import with process-wide side effects; fine in a script

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="semkt_skb_standin_"))
    workdir.mkdir(parents=True, exist_ok=True)
    data_root = workdir / "data"
    start = time.time()
    whole, counts = write_dataset(data_root, args.brackets, args.seed)
    n_train = len(whole) * (1 + args.brackets)
    (data_root / "data.yaml").write_text(
        f"path: {data_root}\ntrain: images/train\nval: images/val\nnames:\n  0: object\n"
    )
    init = ultralytics_checkpoint(Path(args.init), args.arch, workdir / "init.pt") if args.init else False

    model = YOLO(args.arch, task="segment")
    model.train(
        data=str(data_root / "data.yaml"),
        epochs=args.epochs,
        imgsz=args.size,
        batch=args.batch,
        nbs=args.batch,  # one optimizer step per batch: the default 64 would accumulate 4 batches, 4x fewer steps
        device="cpu",
        workers=0,  # 2 cores: dataloader processes would only compete with the training threads
        pretrained=str(init) if init else False,  # False: no download of COCO weights
        amp=False,  # the AMP check downloads a model
        plots=False,
        val=False,  # validate once, after the last epoch
        single_cls=True,
        warmup_epochs=1 if init else 3,
        close_mosaic=max(1, args.epochs // 4),
        seed=args.seed,
        project=str(workdir / "runs"),
        name="standin",
        exist_ok=True,
    )
    torch.set_num_threads(args.threads)  # ultralytics' select_device reset it to cores - 1
    trainer = model.trainer
    seg = trainer.metrics  # final validation on the validation views
    net = (trainer.ema.ema if trainer.ema else trainer.model).float().eval()
    shift = calibrate_scores(net, whole, counts)
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trained_on = (
        f"real content: the {len(whole)} train-split views of semkt_plugin/assets/real, "
        f"whole + {args.brackets} make_bracket "
        f"scenes each ({n_train} images, seed {args.seed}), mu-law, Felzenszwalb 'segment everything' masks + pasted "
        f"blobs; {args.size}px, fine-tuned from {'the synthetic-scene stand-in' if init else 'scratch'}"
    )
    torch.save(
        {
            "format": "semkt-skb",
            "arch": args.arch,
            "nc": 1,
            "state_dict": state,
            "meta": {
                "trained_on": trained_on,
                "epochs": args.epochs,
                "score_bias_shift": shift,
                "val_split": "validation views (8), Felzenszwalb masks",
                "val_mask_mAP50": float(seg.get("metrics/mAP50(M)", float("nan"))),
                "val_mask_mAP50_95": float(seg.get("metrics/mAP50-95(M)", float("nan"))),
            },
        },
        args.out,
    )
    size_mb = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size_mb:.2f} MiB) in {time.time() - start:.0f} s; class-score bias +{shift:.2f}; "
          f"val metrics (before that shift): {seg}")
    print(f"dataset and ultralytics run left in {workdir}")


if __name__ == "__main__":
    main()
