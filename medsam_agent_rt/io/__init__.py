"""Medical image input and episode outputs.

The one door for files, used by the CLI, datasets, evaluation, training and the server.

Input: :func:`read_image` reads PNG / JPEG / TIFF / BMP, DICOM (file or series directory) and
NIfTI, chosen from the file's signature, into a :class:`LoadedImage` (``rgb`` (H, W, 3) uint8
plus the metadata: intensity mapping, spacing, frame / slice, affine, ...); :func:`read_mask`
reads a ground-truth mask (mask image, or the matching slice of a NIfTI mask volume). Windowing
for CT (presets, explicit (C, W)) is in :mod:`~medsam_agent_rt.io.windowing`.

Output: mask PNG, mask NIfTI aligned to the input, trajectory JSON, the overlay strip and plain
PNGs, each written atomically (nothing left behind on failure); :func:`write_outputs` writes the
whole output folder of one episode at once.

Typical use (what ``medsam-agent segment`` does)::

    image = read_image("ct.dcm", window="abdomen")        # or (40, 400), or a .nii.gz + axis
    ...                                                    # run the agent on image.rgb
    with atomic_directory(out_dir, overwrite=True) as tmp:  # all outputs or none
        write_mask_png(tmp / "mask.png", mask, like=image)
        write_mask_nifti(tmp / "mask.nii.gz", mask, like=image)
        write_json(tmp / "trajectory.json", record.to_dict())
        write_overlay_strip(tmp / "overlay.png", tiles, captions)

Importing this package needs NumPy only; Pillow, pydicom, nibabel and tifffile are imported by
the readers and writers that use them.
"""

from medsam_agent_rt.io.atomic import atomic_directory, atomic_write_bytes
from medsam_agent_rt.io.errors import ImageReadError, MissingDecoderError, UnsupportedFormatError
from medsam_agent_rt.io.layout import SliceLayout
from medsam_agent_rt.io.loaded import LoadedImage
from medsam_agent_rt.io.masks import read_mask
from medsam_agent_rt.io.outputs import write_outputs
from medsam_agent_rt.io.reader import FORMATS, detect_format, read_image
from medsam_agent_rt.io.strip import (
    action_label,
    compose_overlay_strip,
    turn_caption,
    write_overlay_strip,
)
from medsam_agent_rt.io.windowing import (
    WINDOW_PRESETS,
    IntensityMapping,
    map_to_uint8,
    parse_window,
    window_to_uint8,
)
from medsam_agent_rt.io.writers import write_json, write_mask_nifti, write_mask_png, write_png

__all__ = [
    "FORMATS",
    "WINDOW_PRESETS",
    "ImageReadError",
    "IntensityMapping",
    "LoadedImage",
    "MissingDecoderError",
    "SliceLayout",
    "UnsupportedFormatError",
    "action_label",
    "atomic_directory",
    "atomic_write_bytes",
    "compose_overlay_strip",
    "detect_format",
    "map_to_uint8",
    "parse_window",
    "read_image",
    "read_mask",
    "turn_caption",
    "window_to_uint8",
    "write_json",
    "write_mask_nifti",
    "write_mask_png",
    "write_outputs",
    "write_overlay_strip",
    "write_png",
]
