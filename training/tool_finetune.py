"""Fine-tune LiteMedSAM for clicks: ``medsam-agent train tool`` -> ``litemedsam-click``.

LiteMedSAM was distilled from MedSAM, which was trained with boxes only, so clicks barely steer
it. This trains its prompt encoder and mask decoder (the image encoder stays frozen; its
embeddings come from the cache built by ``tool_data``) with iterative click simulation, the way
interactive segmentation models are trained (RITM, SAM, SAM2), in the 256 x 256 model frame:

    for each step (one random draw per step from Generator([seed, step]): resumable exactly):
        B (image, target) pairs, images drawn uniformly within a dataset drawn uniformly
        opening (one per step): a GT box (prob. --p-box; per pair tight with prob. --p-tight,
            else jittered) or one positive click
        strategy (one per step): box + all clicks, with or without the previous low-res logits
        for it in 0..K:
            logits, iou_pred = decoder(embedding, prompts so far [, previous logits, detached])
            loss += 20 * focal + Dice + MSE(iou_pred, IoU)   (single-mask output, token 0)
            box-only iteration (it 0 of a box opening): loss += --distill x the binary KL of
                the logits to the frozen base decoder's (LiteMedSAM's) on the same box: keeps
                what the box alone gives on image types the training data lacks
            new click from the larger error region of (logits > 0): the kernel's next_click
            (prob. --p-centre) or a pixel drawn among that region's near-maximum-depth pixels
        K: --clicks, or drawn per step in [--clicks-min, --clicks]
        AdamW step on loss / (K + 1), gradient clipped at 1, linear warm-up then cosine decay

Every ``--eval-every`` steps the trainable weights are scored on the val cache (``tool_eval``:
GT box alone; click-only episodes of 5 clicks; box + 4 clicks) and written to ``step-N.pt``;
the latest state (weights, optimiser, step; every ``--save-every`` steps) is ``last.pt`` for
``--resume``.

Simplifications against SAM's recipe: no multimask (ambiguity) outputs are trained (LiteMedSAM
uses token 0 for every prompt), no mask-only iterations, one number of clicks per step (the batch shares it), loss
on the 256 x 256 low-res logits (the model frame) rather than at full image resolution.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from medsam_agent_rt.training import tool_data, tool_sim

from medsam_agent_rt.io.atomic import atomic_write_bytes


def _f(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class ToolConfig:
    cache: str = _f("runs/emb", "embedding cache (training.tool_data)")
    out: str = _f("runs/tool", "output folder (checkpoints, log.jsonl, loss.png)")
    steps: int = _f(400, "optimiser steps")
    batch: int = _f(8, "(image, target) pairs per step")
    clicks: int = _f(
        4, "corrective clicks per episode (iterations = clicks + 1); the most, with --clicks-min"
    )
    clicks_min: int = _f(
        -1,
        "fewest corrective clicks: each step draws its count uniformly in [clicks-min, "
        "clicks] (SAM's random number of iterations; -1: always --clicks)",
    )
    lr: float = _f(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    warmup: int = _f(20, "linear warm-up steps")
    p_box: float = _f(0.5, "probability that an episode opens with a (jittered) box")
    jitter: float = _f(0.1, "box jitter, fraction of the box side per coordinate")
    p_tight: float = _f(0.0, "probability that a box opening uses the tight GT box (no jitter)")
    p_loose: float = _f(
        0.0,
        "probability that a non-tight box is instead grown outward by up to --grow of its side "
        "(the loose boxes a policy draws)",
    )
    grow: float = _f(0.5, "largest outward growth of a loose box, fraction of the box side")
    distill: float = _f(
        0.0, "weight of the box-only iteration's KL to the frozen base decoder (box preservation)"
    )
    p_centre: float = _f(0.5, "probability of the kernel's next_click (else a sampled click)")
    p_prev_logits: float = _f(0.5, "probability that an episode feeds back previous logits")
    bf16: bool = _f(False, "bfloat16 autocast for the decoder passes (CPU: ~1.5x faster)")
    save_every: int = _f(10, "resume state (last.pt) every N steps")
    eval_every: int = _f(100, "val evaluation + checkpoint every N steps (0: at the end only)")
    eval_limit: int = _f(64, "val targets scored (0: all)")
    eval_carry: str = _f("prev,noprev", "carrying strategies scored on val (prev, noprev)")
    eval_loose: str = _f("", "loose-box measures scored on val, e.g. jitter0.3,grow0.5")
    eval_at_start: bool = _f(False, "score the starting weights on val first (baseline)")
    seed: int = _f(0, "seed")
    threads: int = _f(1, "torch threads")
    resume: bool = _f(False, "continue from OUT/last.pt")
    init: str = _f(
        "",
        "start from these tool weights (a step-N.pt of an earlier run or a shipped "
        ".safetensors; fresh optimiser)",
    )


def trainable_state(model) -> dict:
    """The fine-tuned weights: every prompt_encoder.* and mask_decoder.* tensor (copies)."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if k.startswith(("prompt_encoder.", "mask_decoder."))
    }


def load_tool_weights(model, path) -> None:
    """Load tool weights into ``model``: a ``step-N.pt``, a ``last.pt`` (its trainable part) or a
    shipped ``.safetensors``; every prompt_encoder.* / mask_decoder.* tensor and nothing else."""
    from medsam_agent_rt.segmenters.checkpoints import read_state_dict

    state = read_state_dict(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("image_encoder.") for k in missing):
        raise ValueError(f"{path}: not a tool checkpoint ({(unexpected or missing)[:3]})")


def build_model(model=None):
    """``model`` (default: the embedded LiteMedSAM) in training mode with the image encoder
    frozen (eval mode, no gradients)."""
    if model is None:
        from medsam_agent_rt.segmenters.checkpoints import load_embedded_litemedsam

        model = load_embedded_litemedsam()
    model.train()
    model.image_encoder.eval()
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
    return model


class Pool:
    """The cached (image, target) pairs of one split, grouped by dataset (loaded lazily)."""

    def __init__(self, cache: Path, split: str) -> None:
        self.cache, self.split = cache, split
        self.entries: list[tool_data.CachedImage] = []
        self.by_dataset: dict[str, list[int]] = {}
        self._loaded: dict[int, tuple] = {}
        self.refresh()
        if not self.entries:
            raise FileNotFoundError(
                f"no cached {split!r} images under {cache}: run `python -m "
                f"medsam_agent_rt.training.tool_data --cache {cache} --split {split} ...` first"
            )

    def refresh(self) -> None:
        """Take in entries a concurrent ``tool_data`` run has finished since (the index only
        grows). With a cache still growing, draws depend on timing: resume is exact only once
        the cache is complete."""
        entries = tool_data.read_index(self.cache, self.split)
        for i in range(len(self.entries), len(entries)):
            self.by_dataset.setdefault(entries[i].dataset, []).append(i)
        self.entries = entries
        self.datasets = sorted(self.by_dataset)

    def get(self, i: int):
        if i not in self._loaded:
            self._loaded[i] = tool_data.load_entry(self.entries[i])
        return self._loaded[i]

    def batch(self, pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings (N, 256, 64, 64) float32, GT masks (N, 256, 256) bool, valid regions
        (N, 256, 256) bool) of (entry index, target index) pairs."""
        embs, gts, valids = [], [], []
        for i, t in pairs:
            emb, masks, resized = self.get(i)
            embs.append(emb.astype(np.float32))
            gts.append(masks[t])
            valids.append(tool_sim.valid_region(resized, masks.shape[-1]))
        return np.stack(embs), np.stack(gts), np.stack(valids)

    def draw(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        """n (entry index, target index) pairs: dataset uniform, image uniform, target uniform."""
        out = []
        for _ in range(n):
            ds = self.datasets[int(rng.integers(len(self.datasets)))]
            i = self.by_dataset[ds][int(rng.integers(len(self.by_dataset[ds])))]
            out.append((i, int(rng.integers(len(self.entries[i].targets)))))
        return out


def episode_loss(model, pool: Pool, cfg: ToolConfig, rng: np.random.Generator, teacher=None):
    """(mean loss over iterations (a graph), per-iteration [loss, Dice loss, IoU] floats).
    teacher: the frozen base model whose box-only logits the box iteration is distilled to
    (``cfg.distill`` > 0); its KL is appended to iteration 0's entry."""
    import torch

    pairs = pool.draw(rng, cfg.batch)
    embs, gts, valid = pool.batch(pairs)
    emb_t = torch.from_numpy(embs)
    gt_t = torch.from_numpy(gts.astype(np.float32))
    valid_t = torch.from_numpy(valid.astype(np.float32))
    use_box = bool(rng.random() < cfg.p_box)
    use_logits = bool(rng.random() < cfg.p_prev_logits)
    boxes = [None] * len(gts)
    if use_box:
        tight = rng.random(len(gts)) < cfg.p_tight
        # drawn only when enabled, so runs without loose boxes keep their random stream
        loose = rng.random(len(gts)) < cfg.p_loose if cfg.p_loose > 0 else np.zeros(len(gts), bool)
        boxes = [
            tool_sim.grown_box(g, rng, cfg.grow)
            if lo and not t
            else tool_sim.jittered_box(g, rng, 0.0 if t else cfg.jitter)
            for g, t, lo in zip(gts, tight, loose)
        ]
    clicks: list[list] = [[] for _ in pairs]
    if not use_box:
        clicks = [[tool_sim.first_click(g, rng, rng.random() < cfg.p_centre)] for g in gts]
    n_clicks = cfg.clicks
    if 0 <= cfg.clicks_min < cfg.clicks:
        n_clicks = int(rng.integers(cfg.clicks_min, cfg.clicks + 1))
    prev = torch.zeros(len(pairs), 1, *model.mask_input_size)
    has = torch.zeros(len(pairs))
    total, curve = 0.0, []
    for it in range(n_clicks + 1):
        toks = [tool_sim.prompt_tokens(c, b) for c, b in zip(clicks, boxes)]
        coords = torch.from_numpy(np.stack([c for c, _ in toks]))
        labels = torch.from_numpy(np.stack([lab for _, lab in toks]))
        sparse = model.prompt_encoder.embed_tokens(coords, labels)
        low, iou_pred = model.decode(emb_t, sparse, prev, has)
        logits = low[:, 0]
        focal, dice, mse, iou = tool_sim.losses(logits, iou_pred[:, 0], gt_t, valid_t)
        loss = (20 * focal + dice + mse).mean()
        entry = [float(loss.detach()), float(dice.detach().mean()), float(iou.mean())]
        if it == 0 and use_box and cfg.distill > 0:
            with torch.no_grad():
                t_sparse = teacher.prompt_encoder.embed_tokens(coords, labels)
                t_logits = teacher.decode(emb_t, t_sparse, prev, has)[0][:, 0]
            # zoom crops are not distilled: the base decoder was never meant to see them
            whole = torch.tensor([0.0 if pool.entries[i].is_zoom_crop else 1.0 for i, _ in pairs])
            kl = (tool_sim.binary_kl(logits, t_logits, valid_t) * whole).mean()
            loss = loss + cfg.distill * kl
            entry.append(float(kl.detach()))
        total = total + loss
        curve.append(entry)
        if it == n_clicks:
            break
        pred = (logits.detach() > 0).numpy() & valid
        for b, g in enumerate(gts):
            done = [(x, y) for x, y, _ in clicks[b]]
            clicks[b].append(
                tool_sim.corrective_click(pred[b], g, done, rng, rng.random() < cfg.p_centre)
            )
        if use_logits:
            prev = logits.detach()[:, None]
            has = torch.ones(len(pairs))
    return total / (n_clicks + 1), curve


def lr_at(step: int, cfg: ToolConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def train(cfg: ToolConfig, log=print, model=None) -> Path:
    """Run (or resume) training; returns the output folder. model: a SamModel to train in place
    of the embedded LiteMedSAM (tests use tiny ones); its image encoder is frozen here."""
    import torch
    from medsam_agent_rt.training import tool_eval

    if not 0.0 <= cfg.p_loose <= 1.0 or not 0.0 < cfg.grow <= 2.0:
        raise ValueError(
            f"p_loose must be in [0, 1] and grow in (0, 2]; got {cfg.p_loose}, {cfg.grow}"
        )
    tool_eval.parse_loose(cfg.eval_loose)  # a typo fails before any training
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = Pool(Path(cfg.cache), "train")
    val = Pool(Path(cfg.cache), "val") if cfg.eval_every >= 0 else None
    model = build_model(model)
    teacher = None
    if cfg.distill > 0:  # the base weights, before --init / --resume replace them
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if not n.startswith("image_encoder.")]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if cfg.resume and (out / "last.pt").is_file():
        ck = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ck["trainable"], strict=False)
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
        log(f"resumed at step {step}")
    elif cfg.init:
        load_tool_weights(model, cfg.init)
        log(f"initialised from {cfg.init}")
    if step == 0 and val is not None and cfg.eval_at_start:
        _evaluate(model, val, cfg, out, 0, tool_eval, log)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    t0 = time.time()
    while step < cfg.steps:
        rng = np.random.default_rng([cfg.seed, step])
        if step % 10 == 0:
            pool.refresh()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss, curve = episode_loss(model, pool, cfg, rng, teacher)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        opt.step()
        step += 1
        loss = float(loss.detach())
        rec = {"step": step, "loss": loss, "lr": lr_at(step - 1, cfg), "grad_norm": gnorm}
        rec["iterations"] = curve
        rec["seconds"] = round(time.time() - t0, 2)
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(f"step {step}/{cfg.steps} loss {loss:.4f} IoU {curve[0][2]:.3f}->{curve[-1][2]:.3f}")
        evaluate = step % max(cfg.eval_every, 1) == 0 or step == cfg.steps
        if evaluate or step % max(cfg.save_every, 1) == 0:
            state = {"trainable": trainable_state(model), "optimizer": opt.state_dict()}
            buf = io.BytesIO()
            torch.save({**state, "step": step}, buf)
            atomic_write_bytes(out / "last.pt", buf.getvalue())  # a kill never leaves half
        if evaluate and val is not None and (cfg.eval_every > 0 or step == cfg.steps):
            _evaluate(model, val, cfg, out, step, tool_eval, log)
    from medsam_agent_rt.training import tool_report

    tool_report.plot(out)
    return out


def _evaluate(model, val: Pool, cfg: ToolConfig, out: Path, step: int, tool_eval, log) -> None:
    import torch

    model.eval()
    scores = tool_eval.evaluate_pool(
        model, val, limit=cfg.eval_limit, carry=cfg.eval_carry, loose=cfg.eval_loose
    )
    model.train()
    model.image_encoder.eval()
    torch.save(trainable_state(model), out / f"step-{step}.pt")
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": step, "val": scores}) + "\n")
    log(f"val step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))


def main(argv: list[str] | None = None) -> int:
    from training.common import add_config_args, config_from_args

    ap = argparse.ArgumentParser(description="Fine-tune LiteMedSAM's decoder for clicks")
    add_config_args(ap, ToolConfig)
    cfg = config_from_args(ap.parse_args(argv), ToolConfig)
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
