"""The pipeline's last steps: package the trained policy small, plot the GRPO reward curve, and
gather every figure of a run into one summary (held-out table, GRPO gain, sizes, timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medsam_agent_rt.training import common


def dir_size(path: str | Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def package_policy(src: str | Path, dst: str | Path, dtype: str = "float16") -> Path:
    """A copy of the HF checkpoint ``src`` with its weights cast to ``dtype`` (the tokenizer,
    preprocessor and generation configs kept), loadable by policies.hf.HFPolicy."""
    if dtype not in ("float16", "bfloat16", "float32"):
        raise ValueError(f"dtype must be float16, bfloat16 or float32, got {dtype!r}")
    model, tokenizer, _ = common.load_model(src)
    out = common.export_hf(model, tokenizer, src, dst, dtype=dtype)
    gen = Path(src) / "generation_config.json"
    if gen.is_file():
        (out / "generation_config.json").write_text(gen.read_text())
    return out


def reward_curve(
    log_path: str | Path, png: str | Path, *, title: str = "", window: int = 5
) -> dict[str, Any]:
    """Plot the mean rollout reward per GRPO step (and its moving average; validation reward
    at the evaluation points when the log has them). Returns the plotted series."""
    rows = common.read_jsonl(log_path)
    steps = [r for r in rows if "reward" in r]
    evals = [
        (r["step"], r["eval"]["reward"])
        for r in rows
        if isinstance(r.get("eval"), dict) and "reward" in r["eval"]
    ]
    x = [r["step"] for r in steps]
    y = [r["reward"] for r in steps]
    smooth = [
        sum(y[max(0, i - window + 1) : i + 1]) / len(y[max(0, i - window + 1) : i + 1])
        for i in range(len(y))
    ]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is in the train extra
        raise ImportError(
            "the reward curve needs matplotlib: pip install 'medsam-agent-rt[train]'"
        ) from e
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.plot(x, y, ".", alpha=0.45, label="mean rollout reward (train prompts, T = 1.0)")
    ax.plot(x, smooth, "-", label=f"moving average ({window} steps)")
    if evals:
        ax.plot(*zip(*evals), "s-", label="validation reward (greedy)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward (0.2 format + 0.8 quality)")
    ax.set_title(f"GRPO reward {title}".strip())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return {"steps": x, "reward": y, "moving_average": smooth, "validation": evals}


def summary(
    preset: Any, out: Path, state: dict[str, Any], results: dict[str, Any], curve: dict[str, Any]
) -> dict:
    """Every figure of a run (what benchmarks/results/phantom_tiny.json holds)."""
    sft, grpo = results.get("sft", {}), results.get("grpo", {})
    keys = (
        "dice",
        "iou",
        "actions",
        "reward",
        "invalid_rate",
        "stop_rate",
        "refine_rate",
        "dice_change_after_first",
        "later_turns",
        "n",
    )

    def pick(r: dict) -> dict:
        return {k: r.get(k) for k in keys}

    table = {name: pick(r) for name, r in results.items() if name != "per_split"}
    per_split = results.get("per_split") or {}  # eval-stage groups ("acdc val", "phantoms", ...)
    by_split = {
        split: {name: pick(r) for name, r in rows.items()} for split, rows in per_split.items()
    }
    y = curve["reward"]
    k = max(1, len(y) // 5)
    sft_summary = (
        json.loads((out / "sft" / "summary.json").read_text())
        if (out / "sft" / "summary.json").is_file()
        else {}
    )
    return {
        "preset": preset.name,
        "description": preset.description,
        "command": preset.commands,
        "held_out": table,
        **({"held_out_per_split": by_split} if by_split else {}),
        "grpo_minus_sft": {
            key: (grpo.get(key) - sft.get(key))
            if grpo.get(key) is not None and sft.get(key) is not None
            else None
            for key in ("reward", "dice", "iou", "actions")
        },
        "grpo_train_reward": {
            "first_steps_mean": sum(y[:k]) / k if y else None,
            "last_steps_mean": sum(y[-k:]) / k if y else None,
            "steps": len(y),
        },
        "sft_final_loss": sft_summary.get("final_loss"),
        "package_bytes": dir_size(out / "package") if (out / "package").is_dir() else None,
        "stages": state.get("stages", {}),
        "settings": {
            "sft": preset.sft,
            "grpo": preset.grpo,
            "expert": preset.expert,
            "opening_images": preset.opening_images,
            "episode_images": preset.episode_images,
            "grpo_images": preset.grpo_images,
            "test_images": preset.test_images,
        },
    }


def policy_readme(summary: dict[str, Any]) -> str:
    """README.md of a packaged policy: what it is, how it was trained, its held-out figures."""
    rows = "\n".join(
        f"| {name} | {r['dice']:.3f} | {r['iou']:.3f} | {r['actions']:.2f} | {r['reward']:.3f} | "
        f"{r['invalid_rate']:.2f} |"
        for name, r in summary["held_out"].items()
        if r.get("dice") is not None
    )
    n = next(iter(summary["held_out"].values())).get("n")
    size = (summary.get("package_bytes") or 0) / 1e6
    gain = summary["grpo_minus_sft"].get("reward")
    gain_text = "n/a" if gain is None else f"{gain:+.3f}"
    return f"""# {summary["preset"]}: the embedded demo policy of medsam-agent-rt

**For phantoms and demonstrations only. Not a medical device; not for clinical use.**

{summary["description"]}.

Reproduce (CPU, resumable):

    {summary["command"]}

then copy `runs/phantom-tiny/package/` here. Weights: `model.safetensors` in float16
({size:.1f} MB for the whole directory), loaded by
`medsam_agent_rt.policies.hf.HFPolicy` (transformers, extra `hf`); `medsam-agent segment` uses this
directory when no `--policy` is given.

Training: SFT on expert trajectories (the expert's opening box on {summary["settings"]["opening_images"]}
phantom images, whole expert episodes through LiteMedSAM on {summary["settings"]["episode_images"]} more),
then multi-turn GRPO ({summary["grpo_train_reward"]["steps"]} steps) with the released reward
(0.2 format + 0.8 quality){_kl_note(summary)}, LiteMedSAM as the tool.

Held-out phantom test seeds ({n} targets; the same harness, segmenter and samples for every row):

| policy | Dice | IoU | actions | reward | invalid |
|---|---|---|---|---|---|
{rows}

GRPO minus SFT on the held-out reward: {gain_text}.
"""


NOTICE = """phantom-tiny policy for medsam-agent-rt (Apache-2.0, like the package).
Trained from random initialisation by medsam-agent-rt's training pipeline on procedurally
generated phantom images only (no patient data), with the embedded LiteMedSAM (Apache-2.0, see
../../NOTICE-lite_medsam) as its segmentation tool. The tokenizer is a byte-level BPE trained
by medsam_agent_rt.training.tiny_qwen on the protocol's texts. The architecture is a scaled-down
Qwen3-VL configuration (transformers); no Qwen weights are included.
For phantoms and demonstrations only; not for clinical use.
"""


def _kl_note(summary: dict[str, Any]) -> str:
    """', plus a KL term (coefficient c) to the SFT policy' when the GRPO settings have one."""
    kl = float(summary.get("settings", {}).get("grpo", {}).get("kl_coef", 0.0) or 0.0)
    return f" plus a KL term (k3, coefficient {kl:g}) to the SFT policy" if kl else ""
