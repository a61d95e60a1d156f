"""Supervised fine-tuning of a Qwen-VL policy on expert trajectories (stage 1 of MedSAM-Agent).

Algorithm: next-token cross-entropy on the assistant tokens of multi-turn conversations (the
phrase, the tool call and the closing ``<|im_end|>`` of every assistant turn); the system
prompt, the user turns and the image tokens are masked out. Tokens come from
``policies.qwen_chat.QwenChatEncoder``, the renderer the runtime uses at inference, so training
sees exactly the tokens the policy will be sent. The loss is the mean over all assistant tokens
of the global batch (token-mean, summed over gradient-accumulation micro-steps and processes).
AdamW, linear warm-up then cosine or constant lr, gradient clipping.

Simplifications: one conversation per forward pass (micro-batch 1, no padding or packing; the
global batch is reached by gradient accumulation and data parallelism); images are re-read and
re-processed each time they are seen (no feature cache); the data order is a fixed permutation
per epoch (seed + epoch), so the data position is just the step number.

Precision: ``fp32``; or ``bf16`` = autocast to bfloat16, with fp32 master weights for full
fine-tuning and frozen bf16 base weights (fp32 adapters) with LoRA.

Data: conversations JSONL files (training/conversations.py), e.g. from the expert-trajectory
generator. Checkpoints (``out/checkpoint``: trainable weights, optimizer, scheduler, RNG states,
step) resume bit-exactly with ``--resume``; the final policy is a loadable HF directory
``out/model`` (LoRA merged). An evaluation hook can run the real agent on a validation split.

One process (CPU or one GPU):
    python -m medsam_agent_rt.training.sft --model runs/base --data runs/x/conversations.jsonl \\
        --out runs/sft
N GPUs (DDP; --fsdp shards parameters for models that do not fit one GPU):
    torchrun --nproc_per_node 8 -m medsam_agent_rt.training.sft --model ... --data ... \\
        --out runs/sft --precision bf16 --lora-rank 64 --batch-size 64
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from medsam_agent_rt.training import common
from medsam_agent_rt.training.conversations import iter_conversations, load_images

# ----------------------------------------------------------------------------- config


def _f(default: Any, help: str, **kw: Any) -> Any:
    if default in (list, dict) or (callable(default) and not isinstance(default, type)):
        return field(default_factory=default, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class SFTConfig:
    """SFT settings; every field has a help string (``--help`` of the CLI shows them)."""

    model: str = _f("", "local HF checkpoint directory to start from (Qwen3-VL / Qwen2.5-VL)")
    data: list[str] = _f(list, "conversations JSONL files (training/conversations.py format)")
    out: str = _f("runs/sft", "output directory: checkpoint/, model/, log.jsonl")
    epochs: float = _f(3.0, "passes over the data (ignored when max_steps > 0)")
    max_steps: int = _f(0, "optimizer steps; 0 = derive from epochs")
    batch_size: int = _f(16, "conversations per optimizer step, all processes together")
    lr: float = _f(1e-4, "peak learning rate (AdamW)")
    min_lr_ratio: float = _f(0.1, "cosine floor as a fraction of lr")
    schedule: str = _f("cosine", "'cosine' or 'constant' after the warm-up")
    warmup_steps: int = _f(10, "linear warm-up steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    betas: tuple[float, float] = _f((0.9, 0.95), "AdamW betas")
    grad_clip: float = _f(1.0, "max global gradient norm (0 = off)")
    precision: str = _f("fp32", "'fp32' or 'bf16' (autocast; see the module docstring)")
    lora_rank: int = _f(0, "LoRA rank on the language model; 0 = full fine-tuning")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.05, "LoRA dropout")
    freeze_vision: bool = _f(False, "no gradient for the vision tower and merger")
    fsdp: bool = _f(False, "shard parameters with FSDP (torchrun, models that do not fit)")
    device: str = _f("auto", "'auto', 'cpu' or 'cuda'")
    seed: int = _f(0, "seed of the data order and initialisation of adapters")
    save_every: int = _f(50, "optimizer steps between checkpoints (and at the end)")
    eval_every: int = _f(0, "optimizer steps between evaluation-hook calls; 0 = only at the end")
    log_every: int = _f(1, "optimizer steps between log lines")
    threads: int = _f(0, "torch CPU threads; 0 = leave torch's default")

    def __post_init__(self) -> None:
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 conversation, got {self.batch_size}")
        if self.max_steps < 0 or (self.max_steps == 0 and not self.epochs > 0):
            raise ValueError(
                f"set max_steps > 0 or epochs > 0 (got max_steps={self.max_steps}, epochs={self.epochs})"
            )
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr} (typical: 1e-5 full, 1e-4 LoRA)")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank must be >= 0 (0 = full fine-tuning), got {self.lora_rank}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.save_every < 1 or self.log_every < 1 or self.eval_every < 0:
            raise ValueError("save_every and log_every must be >= 1, eval_every >= 0")

    def lora(self) -> common.LoraSpec | None:
        if not self.lora_rank:
            return None
        return common.LoraSpec(self.lora_rank, self.lora_alpha, self.lora_dropout)


# ----------------------------------------------------------------------------- data


class Conversations:
    """Every conversation of the JSONL files, its images loaded on demand."""

    def __init__(self, paths: list[str]) -> None:
        if not paths:
            raise ValueError("data: give at least one conversations JSONL file")
        self.items: list[tuple[dict[str, Any], Path]] = []
        for p in map(Path, paths):
            if not p.is_file():
                raise FileNotFoundError(f"data file not found: {p}")
            self.items += [(c, p.parent) for c in iter_conversations(p)]
        if not self.items:
            raise ValueError(f"data: no conversations in {paths}")

    def __len__(self) -> int:
        return len(self.items)

    def messages(self, i: int) -> list[dict[str, Any]]:
        conv, root = self.items[i]
        return load_images(conv, root)

    def index(self, position: int, seed: int) -> int:
        """The conversation at global ``position`` of the stream (a permutation per epoch)."""
        epoch, k = divmod(position, len(self))
        return int(np.random.default_rng([seed, epoch]).permutation(len(self))[k])


def encode_example(encoder: Any, messages: list[dict[str, Any]]) -> Any:
    """ChatInputs of a finished conversation; refuses one without assistant tokens."""
    inputs = encoder.encode(messages)
    if not inputs.assistant_mask.any():
        raise ValueError("a training conversation needs at least one assistant turn")
    return inputs


def nll_sum(model: Any, inputs: Any, device: str, autocast: bool) -> tuple[Any, int]:
    """(sum of -log p over the assistant tokens, their count) for one conversation."""
    torch = common.import_torch()
    ctx = (
        torch.autocast(torch.device(device).type, torch.bfloat16)
        if autocast
        else contextlib.nullcontext()
    )
    with ctx:
        lp = common.token_logprobs(model, inputs, device)
    mask = torch.as_tensor(inputs.assistant_mask[1:], device=lp.device, dtype=torch.bool)
    return -(lp[mask]).sum(), int(mask.sum())


# ----------------------------------------------------------------------------- training

EvalHook = Callable[[Any, int], dict[str, float]]  # (greedy Policy of the current model, step)


def build_optimizer(model: Any, cfg: Any, total_steps: int) -> tuple[Any, Any]:
    torch = common.import_torch()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters (everything frozen?)")
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: common.lr_factor(
            s,
            warmup=cfg.warmup_steps,
            total=total_steps,
            schedule=cfg.schedule,
            min_ratio=cfg.min_lr_ratio,
        ),
    )
    return opt, sched


def wrap_distributed(model: Any, cfg: Any, dist: common.Dist) -> Any:
    """DDP (or FSDP per decoder layer with ``cfg.fsdp``) when running under torchrun."""
    if dist.world == 1:
        return model
    torch = common.import_torch()
    if getattr(cfg, "fsdp", False):
        from torch.distributed.fsdp import fully_shard

        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        for layer in inner.model.language_model.layers:
            fully_shard(layer)
        return fully_shard(model)
    ids = [int(dist.device.split(":")[1])] if dist.device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train_sft(cfg: SFTConfig, eval_hook: EvalHook | None = None, *, resume: bool = False) -> dict:
    """Run SFT; returns the final summary (also written to ``out/summary.json``)."""
    torch = common.import_torch()
    import json

    from medsam_agent_rt.training.rollouts import LivePolicy

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dist = common.setup_dist(cfg.device)
    common.seed_everything(cfg.seed)
    out = Path(cfg.out)
    data = Conversations(cfg.data)
    if cfg.batch_size % dist.world:
        raise ValueError(
            f"batch_size {cfg.batch_size} must be a multiple of the {dist.world} processes"
        )
    total = cfg.max_steps or int(np.ceil(cfg.epochs * len(data) / cfg.batch_size))
    model, tokenizer, encoder = common.load_model(
        cfg.model,
        dtype="bfloat16" if cfg.precision == "bf16" and cfg.lora_rank else "float32",
        device=dist.device,
        lora=cfg.lora(),
        freeze_vision=cfg.freeze_vision,
    )
    ddp = wrap_distributed(model, cfg, dist)
    opt, sched = build_optimizer(ddp, cfg, total)  # after FSDP replaced the parameters
    step, ckpt = 0, out / "checkpoint"
    log = common.JsonlLog(out / "log.jsonl", dist)
    if resume and (ckpt / "state.json").is_file():
        step = int(common.load_checkpoint(ckpt, ddp, opt, sched)["step"])
        log.truncate_after(step)
        common.print0(dist, f"sft: resumed at step {step}/{total} from {ckpt}")
    autocast = cfg.precision == "bf16"
    if cfg.fsdp and eval_hook is not None and dist.world > 1:
        common.print0(
            dist,
            "sft: the evaluation hook is skipped with FSDP (one rank cannot run a sharded model)",
        )
        eval_hook = None

    def evaluate(at: int) -> dict[str, float]:
        if eval_hook is None or not dist.master:
            return {}
        m = common.unwrap(ddp)
        m.eval()
        with torch.no_grad():
            metrics = eval_hook(LivePolicy(m, tokenizer, encoder, device=dist.device), at)
        m.train()
        log.write({"step": at, "eval": metrics})
        return metrics

    bar = None
    if dist.master:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="sft", unit="step", dynamic_ncols=True)
    ddp.train()
    per_rank = cfg.batch_size // dist.world
    while step < total:
        t0 = time.perf_counter()
        base = step * cfg.batch_size + dist.rank * per_rank
        batch = [
            encode_example(encoder, data.messages(data.index(base + j, cfg.seed)))
            for j in range(per_rank)
        ]
        n_tok = common.all_reduce_sum(sum(int(b.assistant_mask[1:].sum()) for b in batch), dist)
        loss_sum = 0.0
        for j, inputs in enumerate(batch):
            sync = j == len(batch) - 1 or dist.world == 1
            ctx = contextlib.nullcontext() if sync or not hasattr(ddp, "no_sync") else ddp.no_sync()
            with ctx:
                nll, _ = nll_sum(ddp, inputs, dist.device, autocast)
                (nll * dist.world / n_tok).backward()
            loss_sum += float(nll.detach())
        gnorm = torch.nn.utils.clip_grad_norm_(
            [p for p in ddp.parameters() if p.requires_grad], cfg.grad_clip or float("inf")
        )
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        loss = common.all_reduce_sum(loss_sum, dist) / n_tok
        rec = {
            "step": step,
            "loss": loss,
            "lr": sched.get_last_lr()[0],
            "grad_norm": float(gnorm),
            "tokens": n_tok,
            "seconds": time.perf_counter() - t0,
        }
        if step % cfg.log_every == 0:
            log.write(rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
        if step % cfg.save_every == 0 or step == total:
            state = {"step": step, "config": asdict(cfg)}
            common.save_checkpoint(ckpt, ddp, opt, sched, state, dist)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
            evaluate(step)
    if bar is not None:
        bar.close()
    summary: dict[str, Any] = {"steps": total, "conversations": len(data)}
    export = common.exportable(ddp, lambda: common.load_model(cfg.model, lora=cfg.lora())[0])
    if dist.master:
        final = [r for r in common.read_jsonl(out / "log.jsonl") if "loss" in r]
        summary["final_loss"] = final[-1]["loss"] if final else None
        summary["eval"] = evaluate(step)
        common.export_hf(export, tokenizer, cfg.model, out / "model")
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if dist.world > 1:
        torch.distributed.barrier()
    return summary


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="medsam_agent_rt.training.sft", description=__doc__.split("\n")[0]
    )
    common.add_config_args(parser, SFTConfig)
    parser.add_argument("--resume", action="store_true", help="continue from out/checkpoint")
    args = parser.parse_args(argv)
    train_sft(common.config_from_args(args, SFTConfig), resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
