"""Frozen-encoder embedding cache for fine-tuning LiteMedSAM's prompt encoder + mask decoder.

The image encoder is frozen, so each training image is encoded ONCE and its (256, 64, 64)
embedding stored (float16) with its ground-truth masks mapped into the model-input frame. All
training then happens in that 256 x 256 frame: LiteMedSAM's low-res logits are exactly the
padded input frame (longest side resized to 256, zero-padded bottom/right), so prompts, masks and
losses need no resampling.

One ``.npz`` per image under ``<cache>/<split>/``: ``embedding`` (256, 64, 64) float16,
``masks`` (T, 256, 256) bool (zero outside the resized image), ``resized`` (rows, cols); the
index ``<cache>/<split>.jsonl`` gets one line per finished image (file, image_id, dataset,
targets), written after the file, so an interrupted run resumes where it stopped and never
reads a half-written entry.

Zoom crops (``--zoom-crops K``, for ``segmenters.zoom``): after the whole images, up to K
square crops per cached image around one of its targets, as PromptChain's ``+zoom`` strategies
crop for a correction (the target's box, shifted by up to ``ZOOM_SHIFT`` of its side, enlarged
by a log-uniform expansion in ``ZOOM_EXPANSION``; crops that would not zoom 1.5x are skipped),
cached as entries of their own (image_id ``<image>#zoom<k>``, same dataset) with the targets that
lie >= 90 % inside the crop.

Images are drawn round-robin over the sources (a stratified prefix at any moment), each source
shuffled with a fixed seed. Sources: BiomedParse-layout datasets (realpack) and procedural
phantoms. The demo set is refused: it is for evaluation only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ZOOM_TAG = "#zoom"  # image_id suffix of a zoom-crop entry
ZOOM_EXPANSION = (1.4, 4.0)  # crop side / target box side, drawn log-uniformly
ZOOM_SHIFT = 0.1  # the crop's region is shifted by up to this fraction of the box side


@dataclass(frozen=True)
class CachedImage:
    """One cache entry: the npz path and what it holds."""

    path: Path
    image_id: str
    dataset: str
    targets: tuple[str, ...]

    @property
    def is_zoom_crop(self) -> bool:
        return ZOOM_TAG in self.image_id


def mask_to_frame(mask: np.ndarray, resized: tuple[int, int], size: int) -> np.ndarray:
    """(H, W) bool -> (size, size) bool: nearest-neighbour (pixel centres) to ``resized`` rows x
    cols, zero-padded bottom/right like the model input."""
    h, w = mask.shape
    rows, cols = resized
    ri = np.minimum(((np.arange(rows) + 0.5) * h / rows).astype(np.int64), h - 1)
    ci = np.minimum(((np.arange(cols) + 0.5) * w / cols).astype(np.int64), w - 1)
    out = np.zeros((size, size), np.bool_)
    out[:rows, :cols] = mask[np.ix_(ri, ci)]
    return out


def _groups(samples) -> list[tuple[str, str, list]]:
    """[(image_id, dataset, [samples of that image])] in first-seen order."""
    by: dict[str, list] = {}
    for s in samples:
        by.setdefault(s.image_id, []).append(s)
    return [(k, v[0].dataset, v) for k, v in by.items()]


def _phantom_groups(n: int, seed: int, split: str):
    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES, generate

    out = []
    for i in range(n):
        mod = PHANTOM_MODALITIES[i % len(PHANTOM_MODALITIES)]
        ph = generate(mod, seed + i, 384)
        samples = ph.to_samples(f"phantom-{mod}", split, f"{seed + i:06d}")
        out.append((samples[0].image_id, "phantoms", samples))
    return out


def plan(root: Path | None, split: str, per_dataset: int, phantoms: int, seed: int):
    """Round-robin list of (image_id, dataset, samples): up to ``per_dataset`` images of each
    dataset under ``root`` (BiomedParse layout) for ``split`` and ``phantoms`` phantom images."""
    from medsam_agent_rt.training.pipeline import interleave, training_datasets

    sources: list[list] = []
    if root is not None:
        for ds, samples in training_datasets([Path(root)], [split]):  # refuses demo data
            groups = _groups(samples)
            random.Random(f"{seed}:{ds}:{split}").shuffle(groups)
            sources.append(groups[:per_dataset])
    if phantoms:
        sources.append(_phantom_groups(phantoms, seed + (0 if split == "train" else 10_000), split))
    return interleave(sources)


def read_index(cache: Path, split: str) -> list[CachedImage]:
    """The finished entries of ``split`` (missing index: none)."""
    idx = cache / f"{split}.jsonl"
    if not idx.is_file():
        return []
    out = []
    for line in idx.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out.append(
                CachedImage(cache / r["file"], r["image_id"], r["dataset"], tuple(r["targets"]))
            )
    return out


def load_entry(entry: CachedImage) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(embedding (256, 64, 64) float16, masks (T, 256, 256) bool, resized (rows, cols))."""
    with np.load(entry.path) as z:
        return z["embedding"], z["masks"], tuple(int(v) for v in z["resized"])


class _Embedder:
    """The frozen encoder of the cache: ``pre`` (its preprocessing) and ``(image) -> (embedding
    (C, 64, 64) float16, resized (rows, cols))``; the model loads on the first call (default:
    the embedded LiteMedSAM)."""

    def __init__(self, model=None, threads: int = 1) -> None:
        import torch

        from medsam_agent_rt.segmenters.families import family_spec

        torch.set_num_threads(threads)
        self.pre = family_spec("litemedsam").preprocessing
        if model is not None:
            self.pre = replace(self.pre, input_size=int(model.config.input_size))
        self._model = model

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        import torch

        from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam
        from medsam_agent_rt.segmenters.preprocess import preprocess_image

        if self._model is None:
            self._model = load_embedded_litemedsam()
        self._model.eval()
        x, resized = preprocess_image(image, self.pre)
        with torch.inference_mode():
            emb = self._model.encode(torch.from_numpy(x))[0].numpy().astype(np.float16)
        return emb, resized


def build_cache(
    cache: Path,
    root: Path | None,
    split: str,
    per_dataset: int,
    phantoms: int = 0,
    seed: int = 0,
    threads: int = 1,
    max_targets: int = 4,
    model=None,
) -> int:
    """Encode the planned images not yet in the cache; returns how many were added.
    model: a SamModel whose encoder to use (default: the embedded LiteMedSAM)."""
    embed = _Embedder(model, threads)
    done = {e.image_id for e in read_index(cache, split)}
    todo = [g for g in plan(root, split, per_dataset, phantoms, seed) if g[0] not in done]
    t0 = time.time()
    for n, (image_id, dataset, samples) in enumerate(todo, 1):
        emb, resized = embed(samples[0].load_image())
        targets, masks = [], []
        for s in samples[:max_targets]:
            m = mask_to_frame(s.load_mask(), resized, embed.pre.input_size)
            if m.sum() >= 4:  # a target must survive the resize
                targets.append(s.target)
                masks.append(m)
        if not masks:
            continue
        _write_entry(cache, split, image_id, dataset, list(zip(targets, masks)), emb, resized)
        if n % 10 == 0 or n == len(todo):
            rate = (time.time() - t0) / n
            print(f"[cache {split}] {n}/{len(todo)} images, {rate:.2f} s/image", flush=True)
    return len(todo)


def zoom_crop(masks: list[np.ndarray], target: int, rng: random.Random):
    """One training crop around ``masks[target]`` (each (H, W) bool; see the module docstring):
    (``segmenters.zoom.Frame``, indices of the masks >= 90 % inside it), or None when it would
    not zoom 1.5x."""
    from medsam_agent_rt.segmenters.zoom import ZoomConfig, region_bbox, zoom_frame

    region = region_bbox(masks[target], None, None)
    if region is None:
        return None
    x1, y1, x2, y2 = region
    dx, dy = (x2 - x1 + 1) * ZOOM_SHIFT, (y2 - y1 + 1) * ZOOM_SHIFT
    ox, oy = rng.uniform(-dx, dx), rng.uniform(-dy, dy)
    lo, hi = np.log(ZOOM_EXPANSION[0]), np.log(ZOOM_EXPANSION[1])
    config = ZoomConfig(expansion=float(np.exp(rng.uniform(lo, hi))))
    frame = zoom_frame((x1 + ox, y1 + oy, x2 + ox, y2 + oy), masks[target].shape, config)
    if frame is None:
        return None
    inside = [m[frame.window].sum() for m in masks]
    keep = [k for k, m in enumerate(masks) if inside[k] >= 0.9 * m.sum() > 0]
    return (frame, keep) if target in keep else None


def build_zoom_crops(
    cache: Path,
    root: Path | None,
    split: str,
    per_dataset: int,
    phantoms: int = 0,
    seed: int = 0,
    crops_per_image: int = 1,
    threads: int = 1,
    max_targets: int = 4,
    model=None,
    shard: tuple[int, int] = (0, 1),
) -> int:
    """Add up to ``crops_per_image`` zoom crops of every whole image already in the cache (the
    same plan as ``build_cache``); returns how many were added. Resumable like the images.
    shard (i, n): only every n-th planned crop from the i-th (n processes fill one cache)."""
    from medsam_agent_rt.segmenters.preprocess import resized_size
    from medsam_agent_rt.segmenters.zoom import crop_image

    embed = _Embedder(model, threads)
    done = {e.image_id for e in read_index(cache, split)}
    planned = [
        (f"{g[0]}{ZOOM_TAG}{k}", g[1], g[2])
        for g in plan(root, split, per_dataset, phantoms, seed)
        if g[0] in done
        for k in range(crops_per_image)
    ]  # sharded before the done filter: a resumed shard keeps its share
    todo = [t for t in planned[shard[0] :: shard[1]] if t[0] not in done]
    t0, added = time.time(), 0
    for n, (crop_id, dataset, samples) in enumerate(todo, 1):
        samples = samples[:max_targets]
        image = samples[0].load_image()
        masks = [np.asarray(s.load_mask(), bool) for s in samples]
        rng = random.Random(f"{seed}:zoom:{crop_id}")
        got = zoom_crop(masks, rng.randrange(len(masks)), rng)
        if got is not None:
            frame, keep = got
            crop = crop_image(image, frame)
            resized, size = resized_size(crop.shape[:2], embed.pre), embed.pre.input_size
            kept = [
                (samples[i].target, m)
                for i in keep
                if (m := mask_to_frame(masks[i][frame.window], resized, size)).sum() >= 4
            ]
            if kept:  # encoded only when a target survives the resize
                emb, _ = embed(crop)
                _write_entry(cache, split, crop_id, dataset, kept, emb, resized)
                added += 1
        if n % 10 == 0 or n == len(todo):
            rate = (time.time() - t0) / n
            print(
                f"[zoom crops {split}] {n}/{len(todo)} tried, {added} added, {rate:.2f} s each",
                flush=True,
            )
    return added


def _write_entry(cache, split, image_id, dataset, kept, emb, resized) -> None:
    """The npz, then its index line (a reader never sees a half-written entry)."""
    (cache / split).mkdir(parents=True, exist_ok=True)
    name = hashlib.blake2b(image_id.encode(), digest_size=8).hexdigest() + ".npz"
    np.savez(
        cache / split / name,
        embedding=emb,
        masks=np.stack([m for _, m in kept]),
        resized=np.array(resized, np.int64),
    )
    rec = {"file": f"{split}/{name}", "image_id": image_id, "dataset": dataset,
           "targets": [t for t, _ in kept]}  # fmt: skip
    with open(cache / f"{split}.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _shard(text: str) -> tuple[int, int]:
    i, _, n = text.partition("/")
    try:
        shard = int(i), int(n)
    except ValueError:
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise SystemExit(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return shard


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cache frozen LiteMedSAM embeddings for tool training")
    ap.add_argument("--cache", type=Path, required=True, help="cache folder (outside git)")
    ap.add_argument("--data", type=Path, default=None, help="BiomedParse-layout root (realpack)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--per-dataset", type=int, default=150, help="images per dataset")
    ap.add_argument("--phantoms", type=int, default=0, help="phantom images (8 modalities)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard", default="0/1", help="I/N: this process's share of the crops")
    ap.add_argument(
        "--zoom-crops",
        type=int,
        default=0,
        metavar="K",
        help="then add up to K zoom crops per cached image (segmenters.zoom; module docstring)",
    )
    args = ap.parse_args(argv)
    added = build_cache(
        args.cache, args.data, args.split, args.per_dataset, args.phantoms, args.seed, args.threads
    )
    print(f"added {added} images to {args.cache}/{args.split}", file=sys.stderr)
    if args.zoom_crops > 0:
        crops = build_zoom_crops(
            args.cache, args.data, args.split, args.per_dataset, args.phantoms, args.seed,
            args.zoom_crops, args.threads, shard=_shard(args.shard),
        )  # fmt: skip
        print(f"added {crops} zoom crops to {args.cache}/{args.split}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
