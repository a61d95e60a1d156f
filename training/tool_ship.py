"""Write fine-tuned tool weights for the wheel: ``assets/lite_medsam_click.safetensors``.

    python -m medsam_agent_rt.training.tool_ship runs/tool/step-300.pt [--out PATH]

Only the prompt_encoder.* and mask_decoder.* tensors are written (float32, the names of the
official checkpoint); the image encoder stays LiteMedSAM's (``lite_medsam.safetensors``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def tool_tensors(state: dict) -> dict[str, np.ndarray]:
    """{name: float32 array} of the prompt_encoder.* / mask_decoder.* entries, sorted by name."""
    keys = sorted(k for k in state if k.startswith(("prompt_encoder.", "mask_decoder.")))
    if not keys:
        raise ValueError("no prompt_encoder.* / mask_decoder.* tensors in the checkpoint")
    return {k: np.ascontiguousarray(state[k].detach().cpu().numpy(), np.float32) for k in keys}


def ship(checkpoint: Path, out: Path, note: str = "") -> Path:
    """Convert a ``tool_finetune`` step checkpoint (``step-N.pt``) to safetensors at ``out``."""
    from medsam_agent_rt.segmenters.checkpoints import read_state_dict
    from medsam_agent_rt.segmenters.safetensors_np import save_file

    state = read_state_dict(checkpoint)  # step-N.pt, or last.pt's trainable part
    meta = {"source": Path(checkpoint).name, "family": "litemedsam-click"}
    if note:
        meta["note"] = note
    save_file(tool_tensors(state), out, metadata=meta)
    return out


def main(argv: list[str] | None = None) -> int:
    from medsam_agent_rt.assets import ASSETS_DIR, LITE_MEDSAM_CLICK_FILE

    ap = argparse.ArgumentParser(description="fine-tuned tool checkpoint -> shipped safetensors")
    ap.add_argument("checkpoint", type=Path, help="runs/tool/step-N.pt (or last.pt)")
    ap.add_argument("--out", type=Path, default=ASSETS_DIR / LITE_MEDSAM_CLICK_FILE)
    ap.add_argument("--note", default="", help="metadata note (e.g. the run and selection)")
    args = ap.parse_args(argv)
    print(ship(args.checkpoint, args.out, args.note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
