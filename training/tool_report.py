"""Loss / val curves of a ``tool_finetune`` run: ``OUT/loss.png`` from ``OUT/log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path


def read_log(out: Path) -> tuple[list[dict], list[dict]]:
    """(training step records, val records) of ``out/log.jsonl``."""
    steps, vals = [], []
    for line in (Path(out) / "log.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            (vals if "val" in r else steps).append(r)
    return steps, vals


def plot(out: Path, window: int = 10) -> Path:
    """Training loss (raw and a ``window``-step moving mean) and val Dice per measurement."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is in the train extra
        raise ImportError(
            "the loss curve needs matplotlib: pip install 'medsam-agent-rt[train]'"
        ) from e
    import numpy as np

    steps, vals = read_log(out)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        x = np.array([r["step"] for r in steps])
        y = np.array([r["loss"] for r in steps])
        a.plot(x, y, color="0.7", lw=0.8, label="loss (per step)")
        if len(y) >= window:
            a.plot(
                x[window - 1 :],
                np.convolve(y, np.ones(window) / window, "valid"),
                label=f"mean of {window}",
            )
    a.set_xlabel("step")
    a.set_ylabel("20 focal + Dice + IoU MSE (mean over iterations)")
    a.legend()
    if vals:
        for key in vals[0]["val"]:
            b.plot([r["step"] for r in vals], [r["val"][key] for r in vals], marker="o", label=key)
    b.set_xlabel("step")
    b.set_ylabel("val Dice (256-px model frame)")
    b.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out) / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
