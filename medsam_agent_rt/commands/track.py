"""``medsam-agent track``: segment a target on a key slice / first frame and propagate it.

Volumes (NIfTI, DICOM series folder, .npy) go forward then backward from the key slice; videos
(MP4 via PyAV, a folder of frames) go forward from frame 0 (or --slice). The key mask comes from
--key-mask, else a --box on the key slice, else the box of the --gt mask on the key slice (the
MedSAM2 CT recipe; key slice = largest GT area unless --slice). --tracker box (any segmenter,
box from the previous mask) or sam2 (SAM2/MedSAM2 checkpoints: memory tracker). Writes the mask
(NIfTI with the input's geometry, else .npy; per-frame PNGs for videos), the frames with the mask
overlaid (overlay.mp4 with PyAV, else an animated overlay.gif and a note in the report) and
report.json (scores per slice, time, 3-D Dice with --gt, NSD at 2 mm where the input has a
spacing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

NAME = "track"
HELP = "propagate a segmentation through a volume (NIfTI/DICOM) or a video (MP4/frames)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "input", help="volume (.nii/.nii.gz, DICOM folder, .npy) or video (.mp4, frame folder)"
    )
    p.add_argument("--target", default="target", help="target name (recorded in the report)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--segmenter",
        default=DEFAULT_SEGMENTER,
        help=f"segmenter spec (default {DEFAULT_SEGMENTER})",
    )
    p.add_argument(
        "--tracker",
        choices=("box", "sam2"),
        default=None,
        help="default: sam2 for SAM2 checkpoints, else box",
    )
    p.add_argument("--slice", type=int, default=None, help="key slice / start frame")
    p.add_argument(
        "--gt", default=None, help="ground-truth mask volume (same shape): key box and 3-D Dice"
    )
    p.add_argument("--box", default=None, help="x1,y1,x2,y2 px on the key slice")
    p.add_argument("--key-mask", default=None, help="PNG mask of the target on the key slice")
    p.add_argument(
        "--fps", type=float, default=10.0, help="frame rate of the overlay video (default 10)"
    )
    p.add_argument(
        "--no-overlay",
        action="store_true",
        help="do not write overlay.mp4 (overlay.gif without PyAV)",
    )


def _key_mask(args, stack, seg, gt, k) -> np.ndarray:
    from medsam_agent_rt.propagation.tracker import _rgb, mask_box

    if args.key_mask:
        from PIL import Image

        m = np.asarray(Image.open(args.key_mask).convert("L")) > 127
        if m.shape != stack.frames.shape[1:3]:
            raise ValueError(f"--key-mask is {m.shape}, the slices are {stack.frames.shape[1:3]}")
        return m
    if args.box:
        box = np.array([float(v) for v in args.box.split(",")])
        if box.shape != (4,):
            raise ValueError(f"--box must be x1,y1,x2,y2, got {args.box!r}")
    elif gt is not None:
        box = mask_box(gt[k])
        if box is None:
            raise ValueError(f"the --gt mask is empty on the key slice {k}")
    else:
        raise ValueError("give --key-mask, --box or --gt to define the target on the key slice")
    seg.set_image(_rgb(stack.frames[k]))
    pred = seg.predict(box=box, multimask_output=True)
    return np.asarray(pred.masks[int(np.argmax(pred.scores))], bool)


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt.propagation import dice_3d, nsd_3d, propagate_volume
    from medsam_agent_rt.propagation.io import (
        read_mask_stack,
        read_stack,
        write_mask_stack,
        write_overlay_video,
    )
    from medsam_agent_rt.propagation.tracker import tracker_factory
    from medsam_agent_rt.segmenters import build_segmenter

    try:
        stack = read_stack(args.input)
        gt = read_mask_stack(args.gt, stack) if args.gt else None
        n = len(stack.frames)
        if args.slice is not None:
            k = args.slice
        elif gt is not None and stack.kind == "volume":
            k = int(np.argmax(gt.reshape(n, -1).sum(1)))
        else:
            k = n // 2 if stack.kind == "volume" else 0
        if not 0 <= k < n:
            raise ValueError(f"--slice {k} is out of range 0..{n - 1}")
        seg = build_segmenter(args.segmenter, cache_size=2)
        kind, make = tracker_factory(seg, args.tracker)
        t0 = time.perf_counter()
        key = _key_mask(args, stack, seg, gt, k)
        if stack.kind == "video":  # forward only from the start frame
            frames = stack.frames[k:]
            mask = np.zeros(stack.frames.shape[:3], bool)
            sub, scores_sub = propagate_volume(frames, 0, key, make)
            mask[k:] = sub
            scores = np.zeros(n, np.float32)
            scores[k:] = scores_sub
        else:
            mask, scores = propagate_volume(stack.frames, k, key, make)
        elapsed = time.perf_counter() - t0
        written = write_mask_stack(mask, stack, args.out)
        overlay, overlay_note = (None, None)
        if not args.no_overlay:
            overlay, overlay_note = write_overlay_video(stack.frames, mask, args.out, args.fps)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"medsam-agent track: error: {exc}", file=sys.stderr)
        return 2
    report = {
        "input": str(args.input),
        "kind": stack.kind,
        "target": args.target,
        "segmenter": args.segmenter,
        "tracker": kind,
        "key_index": k,
        "frames": n,
        "seconds": round(elapsed, 3),
        "ms_per_frame": round(1e3 * elapsed / max(n, 1), 1),
        "scores": [round(float(s), 4) for s in scores],
        "mask": str(written),
        "overlay": None if overlay is None else str(overlay),
        "overlay_note": overlay_note,
        "dice_3d": None if gt is None else round(dice_3d(mask, gt), 4),
        "nsd_2mm": None
        if gt is None or stack.spacing is None
        else round(nsd_3d(mask, gt, stack.spacing, 2.0), 4),
    }
    Path(args.out, "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k2: v for k2, v in report.items() if k2 != "scores"}))
    return 0
