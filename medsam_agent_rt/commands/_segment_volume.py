"""``medsam-agent segment VOLUME --propagate``: the volume side of the segment command.

The agent episode runs on the key slice exactly as ``segment`` runs it on one image; its mask is
then propagated forward and backward through the volume by the segmenter's tracker
(``propagation.tracker_factory``: SAM2's memory for SAM2 / MedSAM2, box-from-previous-mask for
the SAM-1 family). Outputs, in the same all-or-nothing folder as the episode's: mask.nii.gz (the
3-D mask on the input's voxel grid), mask_seg.dcm (DICOM series input, when highdicom is
installed) and propagation.json (key slice, per-slice scores, time, 3-D Dice and NSD with --gt).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from medsam_agent_rt.commands._segment_io import UsageError

#: NSD tolerance (mm) reported with --gt.
NSD_TOLERANCE_MM = 2.0


def read_volume_input(args: argparse.Namespace):
    """(LoadedVolume with the key slice as ``key``, GT (D, H, W) bool or None). Key slice:
    --slice, else the slice with the largest GT area when --gt is given, else the middle one."""
    from medsam_agent_rt.io import ImageReadError
    from medsam_agent_rt.io.volume import read_mask_volume, read_volume

    if args.frame is not None:
        raise UsageError("--frame is not supported with --propagate (the first 4-D volume is used)")
    try:
        volume = read_volume(args.image, key_index=args.slice, window=args.window, axis=args.axis)
    except FileNotFoundError:
        raise UsageError(f"IMAGE {args.image}: no such file or directory") from None
    except (ValueError, ImportError, OSError) as exc:  # ImageReadError is a ValueError
        raise UsageError(f"IMAGE {exc}") from None
    if args.gt is None:
        return volume, None
    try:
        gt = read_mask_volume(args.gt, volume)
    except (ImageReadError, ValueError, OSError) as exc:
        raise UsageError(f"--gt {exc}") from None
    if args.slice is None:
        volume = volume.with_key(int(np.argmax(gt.reshape(volume.depth, -1).sum(1))))
    return volume, gt


def agent_reprompt(
    episode_factory: Any, volume: Any, target: str, gt: np.ndarray | None, gt_driven: bool
):
    """``reprompt(index, slice) -> mask | None`` for ``propagate_volume``: a fresh agent episode
    on the slice where the tracker lost the target (a GT-driven policy only where the GT has
    the target there); the indices it ran on are appended to ``reprompt.slices``."""

    def reprompt(i: int, _slice: np.ndarray) -> np.ndarray | None:
        gt_i = None if gt is None else gt[i]
        if gt_driven and (gt_i is None or not gt_i.any()):
            return None
        reprompt.slices.append(int(i))
        mask, _ = episode_factory().run(volume.slices[i], target, gt_i, f"{volume.path}#{i}")
        return np.asarray(mask, bool)

    reprompt.slices = []
    return reprompt


def propagate(
    volume: Any,
    key_mask: np.ndarray,
    segmenter: Any,
    gt: np.ndarray | None,
    reprompt: Any = None,
) -> tuple[np.ndarray, dict]:
    """The 3-D mask (D, H, W) bool from the key slice's mask and what propagation.json holds.
    An empty key mask (the episode found nothing) is not propagated; ``reprompt``
    (``agent_reprompt``) re-invokes the agent where the tracker loses the target."""
    from medsam_agent_rt.propagation import dice_3d, nsd_3d, propagate_volume
    from medsam_agent_rt.propagation.tracker import tracker_factory

    k = int(volume.key.slice_index)
    kind, make = tracker_factory(segmenter)
    t0 = time.perf_counter()
    if np.asarray(key_mask).any():
        mask, scores = propagate_volume(volume.slices, k, key_mask, make, reprompt=reprompt)
        note = None
    else:
        mask = np.zeros(volume.slices.shape[:3], bool)
        mask[k] = key_mask
        scores = np.zeros(volume.depth, np.float32)
        note = "the key slice's mask is empty: nothing was propagated"
    seconds = time.perf_counter() - t0
    report = {
        "key_slice": k,
        "slices": volume.depth,
        "axis": volume.axis,
        "tracker": kind,
        "seconds": round(seconds, 3),
        "ms_per_slice": round(1e3 * seconds / max(volume.depth - 1, 1), 1),
        "voxels": int(mask.sum()),
        "slices_with_mask": int(mask.reshape(volume.depth, -1).any(1).sum()),
        "spacing_mm": None if volume.spacing is None else [round(s, 4) for s in volume.spacing],
        "dice_3d": None if gt is None else round(dice_3d(mask, gt), 4),
        f"nsd_{NSD_TOLERANCE_MM:g}mm": None
        if gt is None or volume.spacing is None
        else round(nsd_3d(mask, gt, volume.spacing, NSD_TOLERANCE_MM), 4),
        "reprompted_slices": None if reprompt is None else list(reprompt.slices),
        "scores": [round(float(s), 4) for s in scores],
        "note": note,
    }
    return mask, report


def output_writers(volume: Any, mask: np.ndarray, report: dict, target: str) -> dict:
    """{file name: writer(path)} of the volume outputs (``io.outputs.write_outputs(extra=...)``);
    mask_seg.dcm only for a DICOM series with highdicom installed (else a note in the report)."""
    from medsam_agent_rt.io import write_json
    from medsam_agent_rt.io.volume import write_mask_volume_nifti

    writers = {
        "mask.nii.gz": lambda p: write_mask_volume_nifti(p, mask, volume),
        "propagation.json": lambda p: write_json(p, report),
    }
    if volume.format == "dicom-series":
        try:
            import highdicom  # noqa: F401
        except ImportError:
            report["dicom_seg"] = "not written: install the extra 'dicomseg' (highdicom)"
        else:
            from medsam_agent_rt.io.dicom_seg import read_source_datasets, write_dicom_seg

            sources = read_source_datasets(volume.files)
            writers["mask_seg.dcm"] = lambda p: write_dicom_seg(mask, sources, p, label=target)
            report["dicom_seg"] = "mask_seg.dcm"
    return writers


def volume_summary(report: dict, files: list[str]) -> dict:
    """The part of the command's summary about the volume (no per-slice scores)."""
    return {k: v for k, v in report.items() if k != "scores"} | {
        "files": [f for f in files if f in ("mask.nii.gz", "mask_seg.dcm", "propagation.json")]
    }


def summary_line(report: dict, out: Path | None) -> str:
    line = (
        f"propagated from slice {report['key_slice']} with the {report['tracker']} tracker: "
        f"{report['voxels']} voxels on {report['slices_with_mask']}/{report['slices']} slices "
        f"in {report['seconds']:.2f} s"
    )
    if report["dice_3d"] is not None:
        line += f"; 3-D Dice {report['dice_3d']:.3f}"
    nsd = report.get(f"nsd_{NSD_TOLERANCE_MM:g}mm")
    if nsd is not None:
        line += f", NSD@{NSD_TOLERANCE_MM:g}mm {nsd:.3f}"
    if report["note"]:
        line += f" ({report['note']})"
    return line + (f" -> {out / 'mask.nii.gz'}" if out else "")
