"""``medsam-agent export sam SPEC --out DIR``: a SAM-family model -> encoder/decoder ONNX + manifest.
``medsam-agent export policy DIR --out OUT [--quant f16]``: a Qwen-VL policy -> GGUF + mmproj.

SPEC is what ``build_segmenter`` takes: ``litemedsam`` (the embedded default) or a checkpoint
file (SAM, MedSAM, LiteMedSAM, MobileSAM). The directory it writes runs with
``build_segmenter(DIR, backend="onnx" | "trt")``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "export"
HELP = (
    "Export a model: `export sam SPEC --out DIR` writes the SAM encoder/decoder ONNX graphs; "
    "`export policy DIR --out OUT` writes a Qwen-VL policy as GGUF for llama.cpp."
)


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    sam = sub.add_parser(
        "sam",
        help="SAM-family segmenter -> encoder/decoder ONNX (FP32/FP16) + manifest.json",
        description="Export a SAM-family segmenter (SPEC: 'litemedsam', 'litemedsam-click' or a "
        "checkpoint file) "
        "to ONNX, check each graph in ONNX Runtime against torch and write a manifest.",
    )
    sam.add_argument(
        "spec", help="'litemedsam', 'litemedsam-click' or a .pth/.pt/.safetensors checkpoint"
    )
    sam.add_argument("--out", required=True, help="output directory (created; must be empty)")
    sam.add_argument(
        "--precision",
        choices=("fp32", "fp16", "both"),
        default="both",
        help="graphs to write (default: both; fp16 is what TensorRT 11 needs for FP16 engines)",
    )
    sam.add_argument("--opset", type=int, default=18, help="ONNX opset, >= 17 (default 18)")
    sam.add_argument(
        "--family",
        choices=("sam", "medsam", "litemedsam", "mobilesam"),
        help="force the family of a ViT-B checkpoint (SAM and MedSAM have identical keys)",
    )
    sam.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    sam.add_argument(
        "--encoder-from",
        metavar="SIBLING",
        help="export the decoder only and name SIBLING's encoder graphs (an export beside --out "
        "of the same image encoder, e.g. litemedsam for litemedsam-click; checked by parity, "
        "int8 too when SIBLING has it)",
    )
    sam.add_argument(
        "--sample-image",
        help="an image file for the ONNX Runtime vs torch parity check (default: synthetic)",
    )
    sam.add_argument("--quiet", action="store_true", help="no progress bar")
    _configure_policy(sub)


def _configure_policy(sub: Any) -> None:
    from medsam_agent_rt.export.gguf_export import QUANTS

    pol = sub.add_parser(
        "policy",
        help="Qwen3-VL / Qwen2.5-VL checkpoint -> text GGUF + mmproj GGUF + manifest.json",
        description="Export a local Qwen3-VL or Qwen2.5-VL checkpoint (HF layout; 'default' = "
        "the embedded policy) to GGUF for llama.cpp (policy spec gguf:OUT). F32/F16/Q8_0 are "
        "written directly; K-quants go through llama.cpp's quantiser (llama-cpp-python).",
    )
    pol.add_argument("src", help="checkpoint directory, or 'default' for the embedded policy")
    pol.add_argument("--out", required=True, help="output directory (created; must be empty)")
    pol.add_argument("--quant", choices=QUANTS, default="f16", help="text model type (default f16)")
    pol.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    pol.add_argument(
        "--no-parity",
        action="store_true",
        help="skip the transformers vs llama.cpp parity measurement recorded in the manifest",
    )
    pol.add_argument("--quiet", action="store_true", help="no progress lines")


def _load(spec: str, family: str | None):
    """(model, family spec, variant, source) for SPEC."""
    from dataclasses import replace
    from pathlib import Path

    from medsam_agent_rt.segmenters.checkpoints import load_checkpoint
    from medsam_agent_rt.segmenters.families import family_spec
    from medsam_agent_rt.segmenters.registry import EMBEDDED, load_embedded

    if spec in EMBEDDED:
        if family not in (None, spec):
            raise ValueError(
                f"spec {spec!r} is the LiteMedSAM family {spec!r}, got --family {family}"
            )
        model, path = load_embedded(spec)
        fam = family_spec(spec)
        fam = replace(
            fam, preprocessing=replace(fam.preprocessing, input_size=model.config.input_size)
        )
        return model, fam, "tinyvit_5m", f"{spec} (embedded {Path(path).name})"
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"SPEC {spec!r} is neither {' nor '.join(map(repr, EMBEDDED))} nor a checkpoint file"
        )
    loaded = load_checkpoint(spec, family=family)
    return loaded.model, loaded.family, loaded.variant, str(Path(spec).resolve())


def run(args: argparse.Namespace) -> int:
    if args.target == "policy":
        return _run_policy(args)
    from medsam_agent_rt.export.sam_onnx import export_sam
    from medsam_agent_rt.segmenters.exported import load_export

    try:
        model, fam, variant, source = _load(args.spec, args.family)
        sample = None
        if args.sample_image:
            from medsam_agent_rt.io import read_image

            sample = read_image(args.sample_image).rgb
        precisions = ("fp32", "fp16") if args.precision == "both" else (args.precision,)
        exported = export_sam(
            model,
            fam,
            args.out,
            precisions,
            args.opset,
            source=source,
            variant=variant,
            sample_image=sample,
            overwrite=args.overwrite,
            progress=not args.quiet,
            encoder_from=args.encoder_from,
        )
        if args.encoder_from and "int8" in load_export(args.encoder_from, verify=False).precisions:
            from medsam_agent_rt.export.sam_quantize import share_quantized_encoder

            exported = share_quantized_encoder(exported.directory)
    except (ValueError, OSError, ImportError) as e:
        print(f"medsam-agent export: error: {e}", file=sys.stderr)
        return 2
    print(f"exported {fam.name} ({variant}) to {exported.directory}")
    if exported.shared_encoder is not None:
        print(f"  encoder graphs shared with {exported.shared_encoder.resolve()}")
    for precision in exported.precisions:
        parity = exported.manifest["graphs"][precision].get("parity")
        if parity is None:  # int8: the sibling's quantised encoder (export.sam_quantize)
            print(f"  {precision}: encoder quantised with the sibling (no parity recorded)")
            continue
        shown = ", ".join(f"{k} {v:.3g}" for k, v in parity.items())
        print(f"  {precision}: ORT vs torch {shown}")
    return 0


def _run_policy(args: argparse.Namespace) -> int:
    from medsam_agent_rt.export.gguf_export import export_policy

    src = args.src
    if src == "default":
        from medsam_agent_rt.assets import ASSETS_DIR
        from medsam_agent_rt.policies.registry import EMBEDDED_POLICY

        src = str(ASSETS_DIR / "policies" / EMBEDDED_POLICY)
    try:
        exported = export_policy(
            src,
            args.out,
            args.quant,
            overwrite=args.overwrite,
            progress=not args.quiet,
            parity=not args.no_parity,
        )
    except (ValueError, OSError, ImportError) as e:
        print(f"medsam-agent export: error: {e}", file=sys.stderr)
        return 2
    m = exported.manifest
    print(f"exported {m['family']} ({m['quant']}) to {exported.directory}")
    for role, f in m["files"].items():
        print(f"  {role}: {f['name']} ({f['bytes'] / 1e6:.2f} MB)")
    par = m["parity"]
    if par.get("measured"):
        lg, emb = par["next_token_logits"], par["image_embedding"]
        print(
            f"  parity vs transformers: logits max|diff| {lg['max_abs']:.3g} (rel {lg['rel']:.3g}, "
            f"argmax equal {lg['argmax_equal']}), image embedding max|diff| {emb['max_abs']}, "
            f"prompt tokens identical {par['prompt_tokens_identical']}"
        )
    else:
        print(f"  parity not measured: {par.get('reason')}")
    print(f"  run it: medsam-agent segment IMAGE --target ... --policy gguf:{exported.directory}")
    return 0
