"""Where a ``gguf:`` spec's files are and what they hold: the export directory (manifest
verified) or a bare text .gguf with its mmproj beside it; the image spec; the family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsam_agent_rt.policies.qwen_chat import ImageSpec


def spec_from_manifest(manifest: dict[str, Any]) -> ImageSpec:
    """The ImageSpec an export's manifest records."""
    s = manifest["image_spec"]
    return ImageSpec(
        manifest["family"],
        int(s["patch_size"]),
        int(s["merge_size"]),
        int(s["temporal_patch_size"]),
        tuple(float(x) for x in s["image_mean"]),
        tuple(float(x) for x in s["image_std"]),
        int(s["min_pixels"]),
        int(s["max_pixels"]),
    )


def resolve_gguf(
    path: str | Path, *, mmproj: str | Path | None = None, verify: bool = True
) -> dict[str, Any]:
    """{"model", "mmproj", "family", "spec", "manifest"} of a ``gguf:`` target."""
    from medsam_agent_rt.export.gguf_manifest import load_manifest

    p = Path(path)
    manifest = None
    if p.is_dir():
        manifest = load_manifest(p, verify=verify)
        model, mmproj = (
            p / manifest["files"]["model"]["name"],
            p / manifest["files"]["mmproj"]["name"],
        )
    elif p.suffix == ".gguf" and p.is_file():
        model = p
        if (p.parent / "manifest.json").is_file():
            manifest = load_manifest(p.parent, verify=verify)
        projs = [Path(mmproj)] if mmproj is not None else sorted(p.parent.glob("mmproj*.gguf"))
        if len(projs) != 1 or not projs[0].is_file():
            raise FileNotFoundError(
                f"{p}: expected exactly one mmproj*.gguf beside it, found {[q.name for q in projs]}"
            )
        mmproj = projs[0]
    else:
        raise FileNotFoundError(f"gguf policy: {p} is neither an export directory nor a .gguf file")
    family = manifest["family"] if manifest else None
    spec = spec_from_manifest(manifest) if manifest else None
    return {"model": model, "mmproj": mmproj, "family": family, "spec": spec, "manifest": manifest}


def family_of(rt: Any) -> str:
    """The Qwen-VL family of a loaded text GGUF from its architecture."""
    import ctypes

    buf = ctypes.create_string_buffer(64)
    rt._llama.llama_model_meta_val_str(rt.model, b"general.architecture", buf, 64)
    arch = buf.value.decode()
    families = {"qwen3vl": "qwen3_vl", "qwen2vl": "qwen2_5_vl"}
    if arch not in families:
        raise ValueError(
            f"the GGUF is architecture {arch!r}; the gguf policy runs {tuple(families)}"
        )
    return families[arch]
