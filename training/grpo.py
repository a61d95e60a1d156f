"""Multi-turn GRPO of a Qwen-VL policy driving the segmenter (stage 2 of MedSAM-Agent).

Algorithm, per step:
1. Take ``prompts_per_step`` training samples (image + target + GT mask) and run ``group_size``
   episodes of each through the real Episode and segmenter with the current policy sampling at
   ``temperature`` (1.0 as released) -- rollouts.py.
2. Score each episode with rewards.agent_reward (format + quality, PROTOCOL.md). Advantage of an
   episode = (reward - group mean) / (group std + eps); optionally plus process credit: each
   executed action's IoU gain times ``process_weight`` on that action's tokens.
3. Old log-probs: recomputed by the pre-update model over the rollout sequences (exact: the
   same forward pass as the update, so the first ratio is exactly 1); the log-probs recorded
   while sampling are kept only as a check (``logprob_gap`` in the log).
4. ``inner_epochs`` passes over the sequences in ``minibatches`` minibatches: per token
   ratio r = exp(logp - old_logp), loss = -min(r A, clip(r, 1 - clip_eps, 1 + clip_eps) A),
   averaged over the policy tokens of the minibatch (token-mean; environment tokens -- system
   prompt, user turns, images -- are masked out); optional k3 KL to the frozen initial model
   (``kl_coef``, 0 as released); gradient clipping; AdamW.

Simplifications: sequences are processed one per forward pass; groups whose episodes all got
the same reward have zero advantage and are skipped (no gradient, no compute); the policy
samples turns without a KV cache across turns (like the runtime); the rollout phase and the
update alternate in one process (no separate inference server). No FSDP: each process samples
its own episodes with the whole model (a sharded forward is collective, and processes take
different numbers of turns); for large models use LoRA (+ bf16) with DDP.

Logged per step (``log.jsonl`` + progress bar): mean reward and every reward component, mean
turns (executed actions), invalid-output rate (episodes ending ``invalid_output`` and invalid
calls per call), tool errors, clip fraction, KL (when on), grad norm, policy tokens, seconds.

One process:
    python -m medsam_agent_rt.training.grpo --model runs/sft/model --dataset phantoms \\
        --out runs/grpo
N GPUs (every process collects its own groups; gradients are summed over the processes with
one all-reduce per optimizer step, so N processes take the step one process would take):
    torchrun --nproc_per_node 8 -m medsam_agent_rt.training.grpo --model ... --out runs/grpo \\
        --precision bf16 --lora-rank 64 --lr 1e-6 --group-size 8
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from medsam_agent_rt.training import common, rewards
from medsam_agent_rt.training.common import add_config_args, config_from_args
from medsam_agent_rt.training.sft import _f, build_optimizer

# ----------------------------------------------------------------------------- config


@dataclass
class GRPOConfig:
    """GRPO settings; every field has a help string."""

    model: str = _f("", "local HF checkpoint directory of the SFT policy")
    out: str = _f("runs/grpo", "output directory: checkpoint/, model/, log.jsonl")
    dataset: str = _f("", "BiomedParse-style root of the training samples (CLI use)")
    steps: int = _f(100, "GRPO steps (each: rollouts, then the update)")
    prompts_per_step: int = _f(2, "samples per step, all processes together")
    group_size: int = _f(8, "rollouts per sample (G; 8 as released)")
    temperature: float = _f(1.0, "sampling temperature of rollouts (1.0 as released)")
    max_new_tokens: int = _f(128, "generation budget per turn (protocol: 128)")
    lr: float = _f(1e-6, "learning rate (1e-6 as released for 8B; small models want more)")
    schedule: str = _f("constant", "'constant' or 'cosine' after the warm-up")
    warmup_steps: int = _f(0, "linear warm-up (optimizer steps)")
    min_lr_ratio: float = _f(0.1, "cosine floor as a fraction of lr")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    betas: tuple[float, float] = _f((0.9, 0.99), "AdamW betas")
    clip_eps: float = _f(0.2, "PPO clip range of the ratio")
    kl_coef: float = _f(0.0, "weight of the k3 KL to the initial policy (0 = off, as released)")
    inner_epochs: int = _f(1, "passes over each step's rollouts")
    minibatches: int = _f(1, "optimizer steps per pass")
    grad_clip: float = _f(1.0, "max global gradient norm (0 = off)")
    adv_eps: float = _f(1e-4, "eps in (reward - mean) / (std + eps)")
    process_weight: float = _f(0.0, "weight of per-action IoU-gain credit (0 = outcome only)")
    max_actions: int = _f(5, "turn budget of an episode (protocol: 5)")
    precision: str = _f("fp32", "'fp32' or 'bf16' (autocast)")
    lora_rank: int = _f(0, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: int = _f(32, "LoRA alpha")
    lora_dropout: float = _f(0.0, "LoRA dropout")
    freeze_vision: bool = _f(False, "no gradient for the vision tower")
    segmenter: str = _f("litemedsam", "segmenter spec of the tool (segmenters.build_segmenter)")
    device: str = _f("auto", "'auto', 'cpu' or 'cuda'")
    seed: int = _f(0, "seed of the prompt order and of sampling")
    save_every: int = _f(10, "steps between checkpoints (and at the end)")
    eval_every: int = _f(0, "steps between evaluation-hook calls; 0 = start and end only")
    threads: int = _f(0, "torch CPU threads; 0 = torch's default")

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (
                self.group_size >= 2,
                f"group_size must be >= 2 (advantages need a group), got {self.group_size}",
            ),
            (
                self.prompts_per_step >= 1,
                f"prompts_per_step must be >= 1, got {self.prompts_per_step}",
            ),
            (self.temperature > 0, f"temperature must be > 0 for rollouts, got {self.temperature}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 < self.clip_eps < 1, f"clip_eps must be in (0, 1), got {self.clip_eps}"),
            (self.kl_coef >= 0, f"kl_coef must be >= 0 (0 = off), got {self.kl_coef}"),
            (
                self.inner_epochs >= 1 and self.minibatches >= 1,
                "inner_epochs and minibatches must be >= 1",
            ),
            (
                self.schedule in ("constant", "cosine"),
                f"schedule must be 'constant' or 'cosine', got {self.schedule!r}",
            ),
            (
                self.precision in ("fp32", "bf16"),
                f"precision must be 'fp32' or 'bf16', got {self.precision!r}",
            ),
            (self.process_weight >= 0, f"process_weight must be >= 0, got {self.process_weight}"),
            (self.max_actions >= 1, f"max_actions must be >= 1, got {self.max_actions}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# ----------------------------------------------------------------------------- advantages


def group_advantages(rewards_: list[float], groups: list[int], eps: float = 1e-4) -> np.ndarray:
    """(reward - group mean) / (group std + eps) per episode (population std); a group whose
    rewards are all equal (std <= 1e-9: float round-off of equal rewards) gets exactly 0.

    >>> group_advantages([1.0, 0.0, 0.5, 0.5], [0, 0, 1, 1], eps=0.0).tolist()
    [1.0, -1.0, 0.0, 0.0]
    """
    r = np.asarray(rewards_, np.float64)
    g = np.asarray(groups)
    out = np.zeros_like(r)
    for k in np.unique(g):
        sel = g == k
        std = r[sel].std()
        if std > 1e-9:
            out[sel] = (r[sel] - r[sel].mean()) / (std + eps)
    return out


def assign_advantages(
    sequences: list[Any], adv: np.ndarray, credits: list[list[float]], weight: float
) -> None:
    """Per-token advantages of each sequence: its episode's advantage on every policy token,
    plus ``weight`` x the IoU gain of the policy call the token belongs to."""
    for seq in sequences:
        a = np.zeros(seq.policy.shape, np.float32)
        on = seq.policy == 1
        a[on] = adv[seq.rollout]
        if weight:
            cr = credits[seq.rollout]
            a[on] += weight * np.asarray([cr[c] for c in seq.call[on]], np.float32)
        seq.advantages = a


# ----------------------------------------------------------------------------- loss


def sequence_loss(
    model: Any, ref: Any, seq: Any, old_lp: Any, cfg: Any, device: str
) -> tuple[Any, dict]:
    """Summed clipped-surrogate loss over the policy tokens of one sequence (+ KL), and stats."""
    torch = common.import_torch()
    autocast = cfg.precision == "bf16"
    ctx = (
        torch.autocast(torch.device(device).type, torch.bfloat16)
        if autocast
        else contextlib.nullcontext()
    )
    with ctx:
        lp = common.token_logprobs(model, seq.inputs, device)
    mask = torch.as_tensor(seq.policy[1:] == 1, device=lp.device)
    adv = torch.as_tensor(seq.advantages[1:], device=lp.device)[mask]
    lp, old = lp[mask], old_lp.to(lp.device)
    ratio = torch.exp(lp - old)
    surrogate = torch.minimum(
        ratio * adv, torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * adv
    )
    loss = -surrogate.sum()
    # clipped: tokens where the clipped branch is the one taken (TRL's clip ratio)
    low = (ratio < 1 - cfg.clip_eps) & (adv < 0)
    high = (ratio > 1 + cfg.clip_eps) & (adv > 0)
    stats = {
        "clipped": float((low | high).sum()),
        "ratio_sum": float(ratio.detach().sum()),
    }
    if ref is not None and cfg.kl_coef > 0:
        with torch.no_grad(), ctx:
            ref_lp = common.token_logprobs(ref, seq.inputs, device)[mask]
        d = ref_lp - lp
        kl = torch.exp(d) - d - 1
        loss = loss + cfg.kl_coef * kl.sum()
        stats["kl_sum"] = float(kl.detach().sum())
    return loss, stats


def policy_logprobs(model: Any, seq: Any, device: str, autocast: bool) -> Any:
    """log-probs of the policy tokens of ``seq`` under ``model`` (no grad)."""
    torch = common.import_torch()
    ctx = (
        torch.autocast(torch.device(device).type, torch.bfloat16)
        if autocast
        else contextlib.nullcontext()
    )
    with torch.no_grad(), ctx:
        lp = common.token_logprobs(model, seq.inputs, device)
    return lp[torch.as_tensor(seq.policy[1:] == 1, device=lp.device)].float().cpu()


# ----------------------------------------------------------------------------- step statistics


def rollout_stats(rollouts: list[Any], comps: list[dict[str, float]]) -> dict[str, float]:
    """Means over the step's episodes: reward and components, turns, invalid/tool-error rates."""
    n = max(len(rollouts), 1)
    calls = sum(len(r.record.turns) for r in rollouts) or 1
    out = {k: float(np.mean([c[k] for c in comps])) for k in comps[0]} if comps else {}
    out.update(
        episodes=len(rollouts),
        invalid_episode_rate=sum(r.record.end_reason == "invalid_output" for r in rollouts) / n,
        invalid_call_rate=sum(t.outcome == "invalid" for r in rollouts for t in r.record.turns)
        / calls,
        tool_errors=float(sum(r.record.end_reason == "tool_error" for r in rollouts)),
        stop_rate=sum(r.record.end_reason == "stop" for r in rollouts) / n,
    )
    return out


# ----------------------------------------------------------------------------- training


def train_grpo(
    cfg: GRPOConfig,
    samples: list[Any],
    segmenter: Any = None,
    eval_hook: Any = None,
    *,
    resume: bool = False,
) -> dict:
    """Run GRPO over ``samples`` (data.Sample with GT); returns the summary (``out/summary.json``)."""
    torch = common.import_torch()
    from medsam_agent_rt.training.rollouts import LivePolicy, collect_rollouts, rollout_sequences
    from tqdm import tqdm

    from medsam_agent_rt.session_config import SessionConfig

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not samples:
        raise ValueError("GRPO needs training samples (image, target, GT mask)")
    dist = common.setup_dist(cfg.device)
    common.seed_everything(cfg.seed + dist.rank)
    if cfg.prompts_per_step % dist.world:
        raise ValueError(
            f"prompts_per_step {cfg.prompts_per_step} must be a multiple of {dist.world} processes"
        )
    if segmenter is None:
        from medsam_agent_rt.segmenters import build_segmenter

        segmenter = build_segmenter(cfg.segmenter, device=dist.device)
    out = Path(cfg.out)
    lora = (
        common.LoraSpec(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout) if cfg.lora_rank else None
    )
    dtype = "bfloat16" if cfg.precision == "bf16" and lora else "float32"
    model, tokenizer, encoder = common.load_model(
        cfg.model, dtype=dtype, device=dist.device, lora=lora, freeze_vision=cfg.freeze_vision
    )
    ref = None
    if cfg.kl_coef > 0:
        ref = common.load_model(cfg.model, dtype=dtype, device=dist.device)[0].eval()
        ref.requires_grad_(False)
    total_opt = cfg.steps * cfg.inner_epochs * cfg.minibatches
    opt, sched = build_optimizer(model, cfg, total_opt)
    step, ckpt = 0, out / "checkpoint"
    log = common.JsonlLog(out / "log.jsonl", dist)
    if resume and (ckpt / "state.json").is_file():
        step = int(common.load_checkpoint(ckpt, model, opt, sched)["step"])
        log.truncate_after(step)
        common.print0(dist, f"grpo: resumed at step {step}/{cfg.steps}")
    inner = model
    session_cfg = SessionConfig(max_actions=cfg.max_actions)
    autocast = cfg.precision == "bf16"
    per_rank = cfg.prompts_per_step // dist.world

    def evaluate(at: int) -> dict[str, float]:
        if eval_hook is None or not dist.master:
            return {}
        inner.eval()
        with torch.no_grad():
            metrics = eval_hook(LivePolicy(inner, tokenizer, encoder, device=dist.device), at)
        log.write({"step": at, "eval": metrics})
        return metrics

    if step == 0:
        evaluate(0)
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="grpo",
        unit="step",
        disable=not dist.master,
        dynamic_ncols=True,
    )
    while step < cfg.steps:
        t0 = time.perf_counter()
        # --- rollouts (deterministic prompt stream: position = step)
        base = step * cfg.prompts_per_step + dist.rank * per_rank
        order = [_stream_index(base + j, len(samples), cfg.seed) for j in range(per_rank)]
        inner.eval()
        policy = LivePolicy(
            inner,
            tokenizer,
            encoder,
            device=dist.device,
            temperature=cfg.temperature,
            max_new_tokens=cfg.max_new_tokens,
            splice=True,
        )
        rollouts = []
        for j, i in enumerate(order):  # sampling seeded by the prompt's place in the stream,
            policy.seed, policy._calls = cfg.seed * 1_000_003 + (base + j) * 1009, 0  # not the rank
            for r in collect_rollouts(policy, segmenter, [samples[i]], cfg.group_size, session_cfg):
                r.group = j
                rollouts.append(r)
        comps = rewards.reward_components([r.record for r in rollouts])
        adv = group_advantages(
            [c["reward"] for c in comps], [r.group for r in rollouts], cfg.adv_eps
        )
        credits = rewards.turn_credits([r.record for r in rollouts]) if cfg.process_weight else []
        seqs = []
        for k, r in enumerate(rollouts):
            if adv[k] != 0 or cfg.process_weight:
                seqs += rollout_sequences(r.record, r.image, encoder, rollout=k)
        assign_advantages(seqs, adv, credits, cfg.process_weight)
        seqs = [s for s in seqs if np.any(s.advantages[s.policy == 1] != 0)]
        t_roll = time.perf_counter() - t0
        # --- old log-probs (pre-update model, same forward as the update)
        old = [policy_logprobs(inner, s, dist.device, autocast) for s in seqs]
        gap = [
            float(np.nanmean(np.abs(o.numpy() - s.sampled_logprobs[1:][s.policy[1:] == 1])))
            for o, s in zip(old, seqs)
        ]
        # --- update (every process takes the same optimizer steps; gradients are summed
        # explicitly, since processes hold different numbers of sequences)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        stats = {"clipped": 0.0, "ratio_sum": 0.0, "kl_sum": 0.0, "tokens": 0.0}
        gnorms = []
        rng = np.random.default_rng([cfg.seed, step, dist.rank])
        for _ in range(cfg.inner_epochs):
            perm = rng.permutation(len(seqs))
            for part in np.array_split(perm, cfg.minibatches):
                n_tok = common.all_reduce_sum(sum(seqs[i].num_policy_tokens for i in part), dist)
                if n_tok == 0:
                    continue  # no policy token with an advantage anywhere: no step
                for i in part:
                    loss, st = sequence_loss(model, ref, seqs[i], old[i], cfg, dist.device)
                    (loss / n_tok).backward()
                    for key in ("clipped", "ratio_sum", "kl_sum"):
                        stats[key] += st.get(key, 0.0)
                    stats["tokens"] += seqs[i].num_policy_tokens
                common.all_reduce_grads(params, dist)
                gnorms.append(
                    float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf")))
                )
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
        step += 1
        tok = max(stats["tokens"], 1.0)
        rec = {
            "step": step,
            **{k: v for k, v in rollout_stats(rollouts, comps).items()},
            "sequences": len(seqs),
            "policy_tokens": stats["tokens"],
            "clip_frac": stats["clipped"] / tok,
            "ratio_mean": stats["ratio_sum"] / tok if stats["tokens"] else 1.0,
            "grad_norm": float(np.mean(gnorms)) if gnorms else 0.0,
            "lr": sched.get_last_lr()[0],
            "logprob_gap": float(np.mean(gap)) if gap else 0.0,
            "retokenize_mismatches": policy.retokenize_mismatches,
            "rollout_s": t_roll,
            "seconds": time.perf_counter() - t0,
        }
        if cfg.kl_coef > 0:
            rec["kl"] = stats["kl_sum"] / tok
        log.write(rec)
        bar.update(1)
        bar.set_postfix(reward=f"{rec['reward']:.3f}", turns=f"{rec['turns']:.2f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            common.save_checkpoint(
                ckpt, model, opt, sched, {"step": step, "config": asdict(cfg)}, dist
            )
        if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            evaluate(step)
    bar.close()
    summary: dict[str, Any] = {"steps": cfg.steps}
    if dist.master:
        rows = [r for r in common.read_jsonl(out / "log.jsonl") if "reward" in r]
        summary["reward_first"] = rows[0]["reward"] if rows else None
        summary["reward_last"] = rows[-1]["reward"] if rows else None
        summary["eval"] = evaluate(step)
        common.export_hf(model, tokenizer, cfg.model, out / "model")
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if dist.world > 1:
        torch.distributed.barrier()
    return summary


def _stream_index(position: int, n: int, seed: int) -> int:
    epoch, k = divmod(position, n)
    return int(np.random.default_rng([seed, 7, epoch]).permutation(n)[k])


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="medsam_agent_rt.training.grpo", description=__doc__.split("\n")[0]
    )
    add_config_args(parser, GRPOConfig)
    parser.add_argument("--resume", action="store_true", help="continue from out/checkpoint")
    args = parser.parse_args(argv)
    cfg = config_from_args(args, GRPOConfig)
    if not cfg.dataset:
        parser.error("--dataset (a BiomedParse-style root with train splits) is required")
    from medsam_agent_rt.data import load_samples

    samples = load_samples(cfg.dataset, splits=["train"])
    train_grpo(cfg, samples, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
