"""Change the vision patch size of a Qwen-VL policy checkpoint, keeping what it has learnt.

A smaller patch gives the policy a finer view of the same 512-px image: 32 -> 16 px turns the
64 image tokens of a turn into 256 (after the 2 x 2 merge), each covering 32 x 32 px instead of
64 x 64. Only the patch-embedding kernel depends on the patch size; it is resampled so that a
patch of uniform colour embeds exactly as before (shrinking by an integer factor k: the kernel is
sum-pooled over k x k blocks; growing by k: each tap is repeated k x k times and divided by k^2).
Every other tensor, the tokenizer and the configs are copied; ``patch_size`` is rewritten in the
model's vision config and in the image-processor config. Fine-tune afterwards (SFT on the same
data); the repatched model starts close to, not equal to, the original on real images.

    python -m medsam_agent_rt.training.repatch runs/sft/model runs/p16 --patch 16
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

KERNEL_SUFFIX = "patch_embed.proj.weight"


def resample_kernel(weight, new_patch: int):
    """Patch-embedding kernel [out, in, t, p, p] resampled to [out, in, t, new, new] with the same
    per-channel sum (the response to a uniform patch)."""
    *lead, p, q = weight.shape
    if p != q:
        raise ValueError(f"expected a square patch kernel, got {p} x {q}")
    if new_patch == p:
        return weight.clone()
    if p % new_patch == 0:
        k = p // new_patch
        return weight.reshape(*lead, new_patch, k, new_patch, k).sum(dim=(-3, -1)).contiguous()
    if new_patch % p == 0:
        k = new_patch // p
        up = weight.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
        return (up / (k * k)).contiguous()
    raise ValueError(
        f"patch {p} -> {new_patch}: only integer factors are supported (e.g. 32 -> 16, 14 -> 28)"
    )


def repatch(src: str | Path, dst: str | Path, patch: int) -> Path:
    """Write ``src`` (an HF Qwen-VL checkpoint directory) to ``dst`` with vision patch ``patch``."""
    from safetensors.torch import load_file, save_file

    from medsam_agent_rt.io.atomic import atomic_directory

    src, dst = Path(src), Path(dst)
    if patch < 2:
        raise ValueError(f"patch must be >= 2 pixels, got {patch}")
    weights = src / "model.safetensors"
    for need in ("config.json", "model.safetensors"):
        if not (src / need).is_file():
            raise FileNotFoundError(f"{src} is not a checkpoint directory: {need} is missing")
    config = json.loads((src / "config.json").read_text())
    vision = config.get("vision_config")
    if not vision or "patch_size" not in vision:
        raise ValueError(f"{src}/config.json has no vision_config.patch_size: not a Qwen-VL model")
    state = load_file(weights)
    keys = [k for k in state if k.endswith(KERNEL_SUFFIX)]
    if len(keys) != 1:
        raise ValueError(f"expected one '*{KERNEL_SUFFIX}' tensor in {weights}, found {keys}")
    state[keys[0]] = resample_kernel(state[keys[0]], patch)
    vision["patch_size"] = int(patch)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # all files or none; refuses a non-empty dst and one that contains src
    with atomic_directory(dst, protect=[src]) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name not in ("model.safetensors", "config.json"):
                shutil.copy2(f, tmp / f.name)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        pre = tmp / "preprocessor_config.json"
        if pre.is_file():
            proc = json.loads(pre.read_text())
            proc["patch_size"] = int(patch)
            pre.write_text(json.dumps(proc, indent=2) + "\n")
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    return dst


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="medsam_agent_rt.training.repatch", description=__doc__.split("\n")[0]
    )
    parser.add_argument("src", help="HF checkpoint directory (e.g. runs/x/sft/model)")
    parser.add_argument("dst", help="new, empty output directory")
    parser.add_argument("--patch", type=int, required=True, help="new vision patch side in px")
    args = parser.parse_args(argv)
    print(repatch(args.src, args.dst, args.patch))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
