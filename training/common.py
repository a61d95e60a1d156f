"""What SFT and GRPO share: the process group, the policy model (full or LoRA, vision tower frozen
or not), per-token log-probs, the learning-rate schedule, checkpoints that resume exactly, the
HF export and a JSONL log. Plain PyTorch + transformers (+ peft for LoRA); imported lazily by
the training scripts (extras ``torch``, ``hf``, ``train``).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np


def import_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "training needs torch and transformers: pip install 'medsam-agent-rt[torch,hf,train]'"
        ) from e
    return torch


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_dist(device: str = "auto") -> Dist:
    """Rank/world from torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK); joins the process group
    (gloo on CPU, nccl on GPU) when WORLD_SIZE > 1. device: "auto" | "cpu" | "cuda"."""
    torch = import_torch()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} but torch sees no CUDA GPU; use device='cpu'")
        device = f"cuda:{local}" if world > 1 or device == "cuda" else device
        torch.cuda.set_device(torch.device(device))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Dist(rank, world, local, device)


def all_reduce_sum(value: float, dist: Dist) -> float:
    """Sum of ``value`` over the processes (itself when alone)."""
    if dist.world == 1:
        return float(value)
    torch = import_torch()
    t = torch.tensor([float(value)], dtype=torch.float64, device=dist.device)
    torch.distributed.all_reduce(t)
    return float(t.item())


def all_reduce_grads(params: list[Any], dist: Dist) -> None:
    """Sum the gradients of ``params`` over the processes (one flat buffer; a missing gradient
    counts as zeros). Training code scales its loss by the global token count beforehand."""
    if dist.world == 1:
        return
    torch = import_torch()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    torch.distributed.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def print0(dist: Dist, *args: Any) -> None:
    """Print on rank 0 only (stderr, so stdout stays clean for results)."""
    if dist.master:
        print(*args, file=sys.stderr, flush=True)


def seed_everything(seed: int) -> None:
    torch = import_torch()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class LoraSpec:
    """LoRA on the language model's linear layers (the vision tower never gets adapters)."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    targets: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )


def load_model(
    path: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    lora: LoraSpec | None = None,
    freeze_vision: bool = False,
) -> tuple[Any, Any, Any]:
    """(model, tokenizer, QwenChatEncoder) of a local Qwen3-VL / Qwen2.5-VL directory.

    dtype "float32" | "bfloat16": the weights' dtype (bf16 trains in bf16 with fp32 optimizer
    state in AdamW's own buffers). lora: wrap with peft adapters (base weights frozen).
    freeze_vision: no gradient for the vision tower and its merger."""
    torch = import_torch()
    import transformers

    from medsam_agent_rt.policies.qwen_chat import (
        QwenChatEncoder,
        load_image_spec,
        qwen_vl_model_class,
    )

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model path must be a local HF checkpoint directory, got {path}")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    cls = qwen_vl_model_class(transformers, config.model_type, str(path), "training supports")
    model = cls.from_pretrained(path, local_files_only=True, dtype=getattr(torch, dtype))
    model.to(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = QwenChatEncoder(
        tokenizer, load_image_spec(path, config.vision_config, config.model_type)
    )
    if freeze_vision:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if lora is not None:
        try:
            import peft
        except ImportError as e:
            raise ImportError("LoRA needs peft: pip install 'medsam-agent-rt[train]'") from e
        names = "|".join(lora.targets)
        cfg = peft.LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=rf".*language_model.*\.({names})",
        )
        model = peft.get_peft_model(model, cfg)
    return model, tokenizer, encoder


def unwrap(model: Any) -> Any:
    """The model under DDP/FSDP wrappers (peft stays: its state dict holds the adapters)."""
    return getattr(model, "module", model)


def token_logprobs(model: Any, inputs: Any, device: str, dtype: Any = None) -> Any:
    """(L - 1,) float32 log p(input_ids[i + 1] | input_ids[: i + 1]) for one ChatInputs."""
    torch = import_torch()
    kw = inputs.model_kwargs(device, dtype)
    logits = model(**kw, use_cache=False).logits[0, :-1].float()
    target = kw["input_ids"][0, 1:]
    return torch.log_softmax(logits, dim=-1).gather(-1, target[:, None])[:, 0]


# ----------------------------------------------------------------------------- schedule


def lr_factor(
    step: int, *, warmup: int, total: int, schedule: str, min_ratio: float = 0.0
) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then constant or cosine down to ``min_ratio`` at ``total``.

    >>> [round(lr_factor(s, warmup=2, total=6, schedule="cosine"), 3) for s in range(7)]
    [0.5, 1.0, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------- checkpoints


def _is_fsdp(model: Any) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - older torch
        return False
    return isinstance(model, FSDPModule)


def _full_states(model: Any, optimizer: Any) -> tuple[dict, dict]:
    """Trainable weights and optimizer state as full (unsharded) dicts, on every rank."""
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights, optim = get_state_dict(model, optimizer, options=opts)
    else:
        weights, optim = unwrap(model).state_dict(), optimizer.state_dict()
    m = unwrap(model)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    return {k: v for k, v in weights.items() if k in trainable}, optim


def save_checkpoint(
    directory: str | Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: dict[str, Any],
    dist: Dist | None = None,
) -> Path:
    """Atomically write ``directory`` (trainable weights, optimizer, scheduler, RNG states and
    ``state``: step, data position, config ...). A crash leaves the previous checkpoint.
    Call it on every rank: FSDP gathers the full state collectively; rank 0 writes."""
    torch = import_torch()
    directory = Path(directory)
    weights, optim = _full_states(model, optimizer)
    if dist is not None and not dist.master:
        return directory
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rng = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    torch.save(weights, tmp / "trainable.pt")
    torch.save(
        {"optimizer": optim, "scheduler": scheduler.state_dict(), "rng": rng}, tmp / "optim.pt"
    )
    (tmp / "state.json").write_text(json.dumps(state, indent=1, default=str))
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def load_checkpoint(directory: str | Path, model: Any, optimizer: Any, scheduler: Any) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the (DDP/FSDP-wrapped) model and the
    optimizer built on it; returns its ``state``. Every rank reads the same files, so every rank
    restores the same RNG."""
    torch = import_torch()
    directory = Path(directory)
    if not (directory / "state.json").is_file():
        raise FileNotFoundError(f"no checkpoint in {directory} (state.json missing)")
    m = unwrap(model)
    weights = torch.load(directory / "trainable.pt", map_location="cpu", weights_only=True)
    missing = {n for n, p in m.named_parameters() if p.requires_grad} - set(weights)
    if missing:
        raise ValueError(
            f"checkpoint {directory} lacks {len(missing)} trainable tensors (e.g. "
            f"{sorted(missing)[0]}): was it written with another LoRA / freeze_vision setting?"
        )
    blob = torch.load(directory / "optim.pt", map_location="cpu", weights_only=False)
    if _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(
            model,
            optimizer,
            model_state_dict=weights,
            optim_state_dict=blob["optimizer"],
            options=StateDictOptions(full_state_dict=True, strict=False),
        )
    else:
        m.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    rng = blob["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((directory / "state.json").read_text())


def exportable(model: Any, rebuild: Any) -> Any:
    """The model to export: itself (unwrapped), or for FSDP the full weights gathered from every
    rank (call on all ranks) into ``rebuild()`` -- a fresh unsharded model -- on rank 0 (None
    on the other ranks)."""
    if not _is_fsdp(model):
        return unwrap(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    import torch.distributed as td

    if td.get_rank() != 0:
        return None
    fresh = rebuild()
    fresh.load_state_dict(full)
    return fresh


def export_hf(
    model: Any, tokenizer: Any, source: str | Path, out: str | Path, dtype: str = ""
) -> Path:
    """A loadable HF checkpoint directory of the current weights (LoRA merged into a copy), with
    the tokenizer and the source's preprocessor_config.json; dtype "" keeps the weights' dtype,
    "float16" / "bfloat16" / "float32" casts the written copy."""
    import copy

    torch = import_torch()
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    m = copy.deepcopy(unwrap(model))
    if hasattr(m, "merge_and_unload"):
        m = m.merge_and_unload()
    if dtype:
        m = m.to(getattr(torch, dtype))
    m.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    pre = Path(source) / "preprocessor_config.json"
    if pre.is_file():
        shutil.copy(pre, tmp / "preprocessor_config.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# ----------------------------------------------------------------------------- logging


class JsonlLog:
    """Appends one JSON object per line (rank 0 only); ``time`` is added to each record."""

    def __init__(self, path: str | Path, dist: Dist) -> None:
        self.path, self.enabled = Path(path), dist.master
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step`` > ``step`` (written after the checkpoint a run resumes)."""
        if self.enabled and self.path.is_file():
            keep = [r for r in read_jsonl(self.path) if r.get("step", -1) <= step]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r, default=float) + "\n" for r in keep))
            tmp.replace(self.path)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({**record, "time": time.time()}, default=float) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a training log (``[]`` before the first is written)."""
    from medsam_agent_rt.evaluation.shards import read_jsonl as read_lines

    return read_lines(path) if Path(path).is_file() else []


# ----------------------------------------------------------------------------- CLI


def add_config_args(parser: Any, cls: type) -> None:
    """One ``--flag`` per dataclass field, with its help string and default."""
    for f in fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default_factory is MISSING else f.default_factory()
        kind = type(default)
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=default, help=f.metadata["help"])
        elif kind is tuple:
            parser.add_argument(
                flag, nargs=len(default), type=float, default=default, help=f.metadata["help"]
            )
        elif kind is list:
            parser.add_argument(flag, nargs="+", default=default, help=f.metadata["help"])
        else:
            parser.add_argument(
                flag, type=kind, default=default, help=f"{f.metadata['help']} (default {default})"
            )


def config_from_args(args: Any, cls: type) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
