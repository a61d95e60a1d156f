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


@dataclass(frozen=True)
class CachedImage:
    """One cache entry: the npz path and what it holds."""

    path: Path
    image_id: str
    dataset: str
    targets: tuple[str, ...]


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
    from medsam_agent_rt.training.pipeline import interleave

    from medsam_agent_rt.data import load_samples, refuse_demo_for_training

    sources: list[list] = []
    if root is not None:
        refuse_demo_for_training(root)
        samples = load_samples(root, splits=[split])
        by_ds: dict[str, list] = {}
        for g in _groups(samples):
            by_ds.setdefault(g[1], []).append(g)
        for ds in sorted(by_ds):
            groups = by_ds[ds]
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
    import torch

    from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam
    from medsam_agent_rt.segmenters.families import family_spec
    from medsam_agent_rt.segmenters.preprocess import preprocess_image

    torch.set_num_threads(threads)
    pre = family_spec("litemedsam").preprocessing
    if model is not None:
        pre = replace(pre, input_size=int(model.config.input_size))
    done = {e.image_id for e in read_index(cache, split)}
    todo = [g for g in plan(root, split, per_dataset, phantoms, seed) if g[0] not in done]
    if not todo:
        return 0
    model = (model if model is not None else load_embedded_litemedsam()).eval()
    (cache / split).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for n, (image_id, dataset, samples) in enumerate(todo, 1):
        image = samples[0].load_image()
        x, resized = preprocess_image(image, pre)
        with torch.inference_mode():
            emb = model.encode(torch.from_numpy(x))[0].numpy().astype(np.float16)
        targets, masks = [], []
        for s in samples[:max_targets]:
            m = mask_to_frame(s.load_mask(), resized, pre.input_size)
            if m.sum() >= 4:  # a target must survive the resize
                targets.append(s.target)
                masks.append(m)
        if not masks:
            continue
        name = hashlib.blake2b(image_id.encode(), digest_size=8).hexdigest() + ".npz"
        np.savez(
            cache / split / name,
            embedding=emb,
            masks=np.stack(masks),
            resized=np.array(resized, np.int64),
        )
        rec = {
            "file": f"{split}/{name}",
            "image_id": image_id,
            "dataset": dataset,
            "targets": targets,
        }
        with open(cache / f"{split}.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if n % 10 == 0 or n == len(todo):
            rate = (time.time() - t0) / n
            print(f"[cache {split}] {n}/{len(todo)} images, {rate:.2f} s/image", flush=True)
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Cache frozen LiteMedSAM embeddings for tool training")
    ap.add_argument("--cache", type=Path, required=True, help="cache folder (outside git)")
    ap.add_argument("--data", type=Path, default=None, help="BiomedParse-layout root (realpack)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--per-dataset", type=int, default=150, help="images per dataset")
    ap.add_argument("--phantoms", type=int, default=0, help="phantom images (8 modalities)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    added = build_cache(
        args.cache, args.data, args.split, args.per_dataset, args.phantoms, args.seed, args.threads
    )
    print(f"added {added} images to {args.cache}/{args.split}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
