"""The SAM-1 checkpoint families: official preprocessing, input size and episode defaults.

Preprocessing reproduces each family's OFFICIAL inference code (resize method included), because
a model only performs as published on the inputs it was trained on:

- ``sam`` (SAM ViT-B/L/H, segment-anything): ResizeLongestSide to 1024 with PIL bilinear on the
  uint8 image, (x - pixel_mean) / pixel_std, zero-pad bottom/right to 1024 x 1024; prompts scaled
  per axis by (new_w / W, new_h / H).
- ``mobilesam`` (MobileSAM): identical to SAM (its predictor is SAM's).
- ``medsam`` (MedSAM ViT-B, MedSAM_Inference.py): skimage ``resize(order=3, anti_aliasing=True,
  preserve_range=True)`` to 1024 x 1024 (aspect not kept), truncation to uint8, min-max to [0, 1];
  prompts scaled by 1024 / W, 1024 / H. skimage is not needed: the same scipy.ndimage calls give
  bit-identical images (tested against skimage where it is installed). One known difference:
  MedSAM upsamples sigmoid probabilities 256 -> (H, W) in one bilinear step and thresholds at
  0.5, we upsample logits 256 -> 1024 -> (H, W) (SAM's post-processing, ``ops``) and threshold
  at 0; masks can differ by boundary pixels only.
- ``litemedsam`` (LiteMedSAM, CVPR24_LiteMedSAM_infer.py): cv2 INTER_AREA resize of the longest
  side to 256, min-max to [0, 1], zero-pad to 256 x 256; boxes mapped with
  ``int(v * 256 / max(H, W))`` (floor).

Episode defaults (how prompts are carried between turns; see ``segmenters.prompt_chain``):

- ``litemedsam``: "box+all_clicks" — MEASURED best on the 71 demo masks (benchmarks/accuracy.py,
  GT box then simulator clicks kept only when IoU rises by >= 0.01: Dice 0.808 -> 0.822, the
  other strategies 0.809-0.815; LiteMedSAM was trained with boxes only, so mask inputs and
  stale clicks hurt it). ``multimask_first`` False, measured too: with the GT box the single-mask
  output (token 0, the one LiteMedSAM was trained on) gives Dice 0.808, the best-scoring of the
  3 multimask outputs 0.780.
- ``litemedsam-click``: LiteMedSAM's image encoder and preprocessing, its prompt encoder + mask
  decoder fine-tuned with iterative click simulation (``training.tool_finetune``);
  ``LITEMEDSAM_CLICK_STRATEGY`` is the measured best carrying strategy on the val data (README):
  SAM's protocol, with corrections zoomed in on the object (``segmenters.zoom``, expansion 4).
- ``medsam``: "box+all_clicks" — not measured (no weights on this machine); MedSAM was trained
  like LiteMedSAM (box prompts, no mask input), so LiteMedSAM's measured behaviour is the best
  available evidence.
- ``sam`` / ``mobilesam``: "box+all_clicks+prev_logits" — not measured (no weights here); this is
  SAM's own interactive training protocol (all clicks so far plus the previous low-res logits as
  mask input), which its decoder was trained on and MobileSAM distils.
"""

from __future__ import annotations

from dataclasses import dataclass

from medsam_agent_rt.segmenters.base import Preprocessing

#: measured on the realpack val splits (README, "litemedsam-click"); see the module docstring
LITEMEDSAM_CLICK_STRATEGY = "box+all_clicks+prev_logits+zoom"

FAMILY_NAMES = ("sam", "medsam", "litemedsam", "litemedsam-click", "mobilesam", "sam2", "medsam2")


@dataclass(frozen=True)
class FamilySpec:
    """name; preprocessing (travels with the checkpoint); default carrying strategy and whether
    the first prompt of an episode asks for 3 masks (keeping the best-scoring one)."""

    name: str
    preprocessing: Preprocessing
    default_strategy: str
    multimask_first: bool
    summary: str


FAMILIES: dict[str, FamilySpec] = {
    "sam": FamilySpec(
        "sam",
        Preprocessing("sam", 1024, "longest_side", "mean_std", interpolation="bilinear"),
        "box+all_clicks+prev_logits",
        True,
        "Segment Anything (ViT-B/L/H), natural images",
    ),
    "mobilesam": FamilySpec(
        "mobilesam",
        Preprocessing("mobilesam", 1024, "longest_side", "mean_std", interpolation="bilinear"),
        "box+all_clicks+prev_logits",
        True,
        "MobileSAM (TinyViT distilled from SAM ViT-H)",
    ),
    "medsam": FamilySpec(
        "medsam",
        Preprocessing("medsam", 1024, "square", "minmax", interpolation="cubic_spline"),
        "box+all_clicks",
        False,
        "MedSAM (SAM ViT-B fine-tuned on medical images with box prompts)",
    ),
    "litemedsam": FamilySpec(
        "litemedsam",
        Preprocessing(
            "litemedsam",
            256,
            "longest_side",
            "minmax",
            interpolation="area",
            coord_rounding="floor",
        ),
        "box+all_clicks",
        False,
        "LiteMedSAM (TinyViT + SAM decoder distilled from MedSAM, 256 px input)",
    ),
    "litemedsam-click": FamilySpec(
        "litemedsam-click",
        Preprocessing(
            "litemedsam",
            256,
            "longest_side",
            "minmax",
            interpolation="area",
            coord_rounding="floor",
        ),
        LITEMEDSAM_CLICK_STRATEGY,
        False,
        "LiteMedSAM with its prompt encoder + mask decoder fine-tuned for clicks "
        "(training.tool_finetune; image encoder unchanged)",
    ),
    # SAM2.1 / MedSAM2 (segmenters.sam2): square antialiased bilinear resize of the [0, 1] image,
    # ImageNet mean/std (= SAM's pixel mean/std x 255). "medsam2" follows the released
    # MedSAM-Agent (newest click + previous logits, multimask first); not measured (no weights).
    "sam2": FamilySpec(
        "sam2",
        Preprocessing("sam2", 1024, "square", "mean_std", interpolation="bilinear_antialias"),
        "box+all_clicks+prev_logits",
        True,
        "SAM2.1 (Hiera-T/S/B+/L), natural images and video",
    ),
    "medsam2": FamilySpec(
        "medsam2",
        Preprocessing("medsam2", 1024, "square", "mean_std", interpolation="bilinear_antialias"),
        "newest_click+prev_logits",
        True,
        "MedSAM2 (SAM2.1 Hiera-T fine-tuned on 3-D medical images and video)",
    ),
}


def family_spec(name: str) -> FamilySpec:
    """The spec of ``name`` (one of FAMILY_NAMES); a clear error otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)}; got {name!r}") from None
