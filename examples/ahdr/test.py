"""Evaluate a trained AHDRNet on the full Test images: PSNR-μ, PSNR-L, SSIM-μ, SSIM-L, averaged over scenes.

    python test.py --data_dir data/kalantari --trained_model_dir ./trained-model/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from dataset import test_set
from model import AHDR
from tqdm import tqdm

from semkt_plugin.reproduction.kalantari import write_hdr
from semkt_plugin.reproduction.metrics import hdr_metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Attention-guided HDR (AHDRNet) testing")
    parser.add_argument("--data_dir", required=True, help="Kalantari layout root holding Test/")
    parser.add_argument("--trained_model_dir", default="./trained-model/")
    parser.add_argument("--trained_model_filename", default="ahdr_model.pt")
    parser.add_argument("--result_dir", default=None, help="if set, write <scene>.hdr predictions here")
    parser.add_argument("--nDenselayer", type=int, default=6, help="dense layers per DRDB")
    parser.add_argument("--growthRate", type=int, default=32, help="growth rate of the dense layers")
    parser.add_argument("--nFeat", type=int, default=64, help="number of feature maps")
    parser.add_argument("--nChannel", type=int, default=6, help="channels per input frame")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict:
    """Returns ``{"psnr_mu", "psnr_l", "ssim_mu", "ssim_l"}`` (means over scenes) and ``"scenes"`` (per scene)."""
    args = parse_args(argv)
    model = AHDR(args)
    state = torch.load(Path(args.trained_model_dir) / args.trained_model_filename, map_location="cpu")
    model.load_state_dict(state)
    model.to(args.device).eval()

    data = test_set(args.data_dir)
    scenes = {}
    for name, (x1, x2, x3, gt) in tqdm(zip(data.names, data), total=len(data), desc="test AHDR"):
        out = model(x1[None].to(args.device), x2[None].to(args.device), x3[None].to(args.device)).cpu()
        scenes[name] = {k: v.item() for k, v in hdr_metrics(out, gt[None]).items()}
        if args.result_dir:
            Path(args.result_dir).mkdir(parents=True, exist_ok=True)
            write_hdr(Path(args.result_dir) / f"{name}.hdr", out[0].permute(1, 2, 0).numpy())
    means = {k: sum(s[k] for s in scenes.values()) / len(scenes) for k in ("psnr_mu", "psnr_l", "ssim_mu", "ssim_l")}
    return {**means, "scenes": scenes}


if __name__ == "__main__":
    result = main()
    print("PSNR-μ {psnr_mu:.2f}  PSNR-L {psnr_l:.2f}  SSIM-μ {ssim_mu:.4f}  SSIM-L {ssim_l:.4f}".format(**result))
