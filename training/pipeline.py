"""The whole MedSAM-Agent training recipe as one resumable command.

    python -m medsam_agent_rt.training.pipeline --preset phantom-tiny [--out runs/phantom-tiny] [--resume]

Stages (each skipped when its output is complete, continued when it was interrupted):

1. base     the starting checkpoint: a tiny random Qwen-VL (phantom-tiny) or --base-model;
2. data     SFT conversations: the expert's opening turn on many train images (no segmenter
            needed) and whole expert episodes through the real Episode + segmenter on others
            (phantoms with disjoint train / val / test seeds, or a BiomedParse-style root);
3. sft      supervised fine-tuning (training/sft.py);
4. grpo     multi-turn GRPO on further train images (training/grpo.py);
5. package  the GRPO policy written small (float16 by default) -- what ships;
6. eval     held-out test images: the SFT policy, the packaged GRPO policy and the baselines
            (oracle-box, clicker:3, expert) in one harness (training/evaluate.py);
7. report   summary.json (every figure), grpo_reward_curve.png.

A finished run can be trained further: ``--sft-steps N`` / ``--grpo-steps N`` raise the preset's step
count; a finished stage whose run took fewer steps is reopened and continues from its checkpoint
(the cosine schedule then spans the new total, so the lr rises again: a warm restart), and every
stage after it runs again. The outputs they replace are moved to ``OUT/superseded/`` (never
deleted). A count below the steps already trained is refused.

Progress goes to stderr; the final summary JSON to stdout and ``OUT/summary.json``.
``--dry-run`` runs any preset on a tiny model and a few samples through the same code path.
GPU presets run under torchrun (data, packaging and evaluation on rank 0; SFT and GRPO on all):
    torchrun --nproc_per_node 8 -m medsam_agent_rt.training.pipeline --preset qwen3vl-8b-lora \\
        --base-model /models/Qwen3-VL-8B-Instruct --data-root /data/biomedparse --out runs/q3vl8b
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from medsam_agent_rt.training import common
from medsam_agent_rt.training.presets import Preset, get_preset

STAGES = ("base", "data", "sft", "grpo", "package", "eval", "report")


def _log(msg: str) -> None:
    print(f"[pipeline] {msg}", file=sys.stderr, flush=True)


class _State:
    """OUT/pipeline.json: which stages finished and how long each took."""

    def __init__(self, out: Path, preset: Preset) -> None:
        self.path = out / "pipeline.json"
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        if self.data and self.data.get("preset") != preset.name:
            raise ValueError(
                f"{out} holds a run of preset {self.data.get('preset')!r}, not {preset.name!r}: "
                "use another --out"
            )
        self.data.update(preset=preset.name, stages=self.data.get("stages", {}))

    def done(self, stage: str) -> bool:
        return bool(self.data["stages"].get(stage, {}).get("done"))

    def finish(self, stage: str, seconds: float, **info: Any) -> None:
        prev = self.data["stages"].get(stage, {}).get("seconds", 0.0)
        self.data["stages"][stage] = {"done": True, "seconds": prev + seconds, **info}
        self.save()

    def reopen(self, stages: list[str]) -> None:
        """Mark finished stages as to be run again (their time so far is kept)."""
        for stage in stages:
            if stage in self.data["stages"]:
                self.data["stages"][stage]["done"] = False
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


# ----------------------------------------------------------------------------- samples


def split_samples(preset: Preset, data_root: str | None, out: Path) -> dict[str, list[Any]]:
    """{"opening", "episode", "grpo", "val", "test": [Sample, ...]} with disjoint images."""
    from medsam_agent_rt.training.phantom_data import phantom_samples

    p = preset
    if p.data == "phantoms":
        a, b = p.opening_images, p.opening_images + p.episode_images
        return {
            "opening": phantom_samples(p.phantoms, "train", p.opening_images),
            "episode": phantom_samples(p.phantoms, "train", p.episode_images, offset=a),
            "grpo": phantom_samples(p.phantoms, "train", p.grpo_images, offset=b),
            "val": phantom_samples(p.phantoms, "val", p.val_images),
            "test": phantom_samples(p.phantoms, "test", p.test_images),
        }
    if p.data == "mixed":
        return mixed_samples(p, data_root)
    from medsam_agent_rt.data import load_samples

    if not data_root:
        raise ValueError(f"preset {p.name!r} trains on a BiomedParse-style root: pass --data-root")
    train = load_samples(data_root, splits=["train"])
    ids = sorted({s.image_id for s in train})
    n_grpo = p.grpo_images or max(1, len(ids) // 5)
    grpo_ids = set(ids[-n_grpo:])  # the last images of the train split become RL prompts

    def first(split: str, n: int) -> list[Any]:
        return load_samples(data_root, splits=[split])[:n] if n else []

    sft = [s for s in train if s.image_id not in grpo_ids]
    return {
        "opening": sft[: p.opening_images] if p.opening_images else sft,
        "episode": sft[: p.episode_images] if p.episode_images else sft,
        "grpo": [s for s in train if s.image_id in grpo_ids],
        "val": first("val", p.val_images),
        "test": first("test", p.test_images),
    }


ROLE_ORDER = ("opening", "episode", "grpo")  # train images of a dataset are dealt in this order


def data_roots(data_root: str | list[str] | tuple[str, ...] | None) -> list[Path]:
    """The dataset roots of ``--data-root``: a path, comma-separated paths or a list."""
    if not data_root:
        return []
    items = [data_root] if isinstance(data_root, (str, Path)) else list(data_root)
    return [Path(r) for part in items for r in str(part).split(",") if r.strip()]


def training_datasets(roots: list[Path], splits: list[str]) -> list[tuple[str, list[Any]]]:
    """(dataset name, its samples of ``splits`` in reader order) for every dataset under the
    roots, root by root, names sorted. Demo roots and demo datasets are refused: they are
    evaluation data, never training data."""
    from medsam_agent_rt.data import load_samples, refuse_demo_for_training

    out = []
    for root in roots:
        refuse_demo_for_training(root)
        samples = load_samples(root, splits=splits)
        for dataset in sorted({s.dataset for s in samples}):
            if "demo" in dataset:
                raise ValueError(f"dataset {dataset!r} under {root} is a demo set: refused")
            out.append((dataset, [s for s in samples if s.dataset == dataset]))
    return out


def interleave(groups: list[list[Any]]) -> list[Any]:
    """Round-robin over the groups, so any prefix mixes every source."""
    out: list[Any] = []
    for k in range(max((len(g) for g in groups), default=0)):
        out.extend(g[k] for g in groups if k < len(g))
    return out


def mixed_samples(preset: Preset, data_root: Any) -> dict[str, list[Any]]:
    """data='mixed': phantoms (the *_images counts, disjoint seeds per split) plus every dataset
    under the roots (comma-separated or a list): per dataset, its train images are shuffled with
    a fixed seed (by image, so every target of an image lands in the same role) and dealt to
    opening / episode / grpo in that order, ``real_per_dataset[role]`` images each; ``test``
    images come from the dataset's val split (also shuffled by image). Demo roots are refused.
    Each role lists the sources round-robin, one entry per sample (image, target)."""
    import random

    from medsam_agent_rt.training.phantom_data import phantom_samples

    p = preset
    roots = data_roots(data_root)
    if not roots:
        raise ValueError(f"preset {p.name!r} trains on real datasets too: pass --data-root")
    per = {role: int(p.real_per_dataset.get(role, 0)) for role in (*ROLE_ORDER, "test")}
    by_role: dict[str, list[list[Any]]] = {role: [] for role in per}
    for dataset, samples in training_datasets(roots, ["train", "val"]):

        def shuffled_images(split: str, samples=samples, dataset=dataset) -> list[list[Any]]:
            by_image: dict[str, list[Any]] = {}
            for s in samples:
                if s.split == split:
                    by_image.setdefault(s.image_id, []).append(s)
            ids = sorted(by_image)
            random.Random(f"mixed:{dataset}:{split}").shuffle(ids)
            return [by_image[i] for i in ids]

        train = shuffled_images("train")
        need = sum(per[r] for r in ROLE_ORDER)
        if need > len(train):
            raise ValueError(f"{dataset}: {need} train images asked for, {len(train)} available")
        start = 0
        for role in ROLE_ORDER:
            chunk = train[start : start + per[role]]
            start += per[role]
            by_role[role].append([s for img in chunk for s in img])
        val = shuffled_images("val")[: per["test"]]
        by_role["test"].append([s for img in val for s in img])
    a, b = p.opening_images, p.opening_images + p.episode_images
    phantoms = {
        "opening": phantom_samples(p.phantoms, "train", p.opening_images),
        "episode": phantom_samples(p.phantoms, "train", p.episode_images, offset=a),
        "grpo": phantom_samples(p.phantoms, "train", p.grpo_images, offset=b),
        "test": phantom_samples(p.phantoms, "test", p.test_images),
    }
    out = {role: interleave([*by_role[role], phantoms[role]]) for role in per}
    out["val"] = phantom_samples(p.phantoms, "val", p.val_images)
    return out


def split_name(sample: Any) -> str:
    """The row group of an evaluation sample: 'phantoms' or '<dataset> <split>'."""
    dataset = getattr(sample, "dataset", "") or ""
    if dataset.startswith("phantom-"):
        return "phantoms"
    return f"{dataset} {getattr(sample, 'split', '')}".strip()


def per_split_results(rows_path: Path, samples: dict[str, list[Any]]) -> dict[str, Any]:
    """{split name: {policy: summary}} over the evaluation rows of the test samples."""
    from medsam_agent_rt.training.evaluate import summarize

    group = {s.sample_id: split_name(s) for s in samples["test"]}
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for line in rows_path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if r["sample_id"] in group:
                rows.setdefault(group[r["sample_id"]], {}).setdefault(r["policy"], []).append(r)
    return {
        name: {policy: summarize(rs) for policy, rs in by_policy.items()}
        for name, by_policy in sorted(rows.items())
    }


def dry_run_data(preset: Preset, out: Path) -> str | None:
    """For a dry run of a BiomedParse preset: a few phantoms written in that layout."""
    if preset.data not in ("biomedparse", "mixed"):
        return None
    from medsam_agent_rt.data.writer import write_phantom_dataset

    root = out / "dry-run-data"
    write_phantom_dataset(
        root,
        n=5,
        size=64,
        modalities=["endoscope"],
        splits="train=0.6,val=0.2,test=0.2",
        show_progress=False,
    )
    return str(root)


# ----------------------------------------------------------------------------- extension

TRAINED_STAGES = {"sft": "max_steps", "grpo": "steps"}  # stage (= its Preset field) -> step key


def with_steps(preset: Preset, sft_steps: int | None, grpo_steps: int | None) -> Preset:
    """``preset`` with its SFT ``max_steps`` and/or GRPO ``steps`` replaced."""
    from dataclasses import replace

    for name, n in (("--sft-steps", sft_steps), ("--grpo-steps", grpo_steps)):
        if n is not None and n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    sft = {**preset.sft, "max_steps": sft_steps} if sft_steps else preset.sft
    grpo = {**preset.grpo, "steps": grpo_steps} if grpo_steps else preset.grpo
    return replace(preset, sft=sft, grpo=grpo)


def trained_steps(out: Path, stage: str) -> int:
    """Optimizer steps the finished ``stage`` of the run in ``out`` took (its checkpoint)."""
    path = out / stage / "checkpoint" / "state.json"
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text())["step"])


def reopen_extended_stages(preset: Preset, out: Path, state: _State) -> None:
    """Reopen the first finished trained stage whose step count ``preset`` raised, and every
    stage after it; the outputs of the later stages move to ``out/superseded/<stage>-<n>`` (a
    later GRPO must start from the new SFT policy)."""
    import shutil

    for stage, key in TRAINED_STAGES.items():
        if not state.done(stage):
            continue
        want = int(getattr(preset, stage).get(key) or 0)
        have = trained_steps(out, stage)
        if not want or want == have:
            continue
        if want < have:
            raise ValueError(
                f"{out}: the {stage} stage already trained {have} steps; cannot shorten it to "
                f"{want} (use another --out for a shorter run)"
            )
        later = list(STAGES[STAGES.index(stage) :])
        for name in later[1:]:
            src = out / name
            if src.exists() and name in ("grpo", "eval"):
                dst = out / "superseded" / f"{name}-after-{stage}-{have}"
                k = 1
                while dst.exists():
                    k += 1
                    dst = out / "superseded" / f"{name}-after-{stage}-{have}.{k}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dst))
                _log(f"{name}: previous output kept in {dst}")
        state.reopen(later)
        _log(f"{stage}: extending {have} -> {want} steps; rerunning {later}")
        return  # everything after the first extended stage is rerun anyway


# ----------------------------------------------------------------------------- run


def run_pipeline(
    preset: Preset,
    out: str | Path,
    *,
    base_model: str | None = None,
    data_root: str | None = None,
    segmenter: Any = None,
    stop_after: str | None = None,
    sft_steps: int | None = None,
    grpo_steps: int | None = None,
) -> dict[str, Any]:
    """Run (or continue) every stage of ``preset`` into ``out``; returns the summary.
    segmenter: a Segmenter or tool factory overriding ``preset.segmenter`` (tests).
    sft_steps / grpo_steps: raise the preset's step counts; finished stages that trained fewer
    steps are continued (see the module docstring)."""
    torch = common.import_torch()
    from medsam_agent_rt.training import evaluate, phantom_data
    from medsam_agent_rt.training.grpo import GRPOConfig, train_grpo
    from medsam_agent_rt.training.sft import SFTConfig, train_sft

    if preset.base_model and not base_model and not Path(preset.base_model).is_dir():
        raise FileNotFoundError(
            f"preset {preset.name!r} starts from {preset.base_model!r}: pass --base-model with "
            "the local checkpoint directory (nothing is downloaded)"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if preset.threads:
        torch.set_num_threads(preset.threads)
    dist = common.setup_dist(preset.sft.get("device", "auto"))
    preset = with_steps(preset, sft_steps, grpo_steps)
    state = _State(out, preset) if dist.master else None
    if state is not None:
        reopen_extended_stages(preset, out, state)
    device = dist.device
    t_all = time.perf_counter()

    def barrier() -> None:
        if dist.world > 1:
            torch.distributed.barrier()

    def stage(name: str) -> bool:
        """Whether ``name`` must run (rank 0 decides from the state file; all ranks agree)."""
        todo = [0.0 if state is None or state.done(name) else 1.0]
        return common.all_reduce_sum(todo[0], dist) > 0 if dist.world > 1 else todo[0] > 0

    # --- base
    t0 = time.perf_counter()
    base = Path(base_model or preset.base_model) if preset.base_model else out / "base"
    if stage("base"):
        if dist.master and not preset.base_model:
            from medsam_agent_rt.training.tiny_qwen import build_tiny_qwen

            _log(f"base: building a tiny {preset.family} model in {base}")
            build_tiny_qwen(base, preset.family, seed=0, size=preset.tiny_size)
        barrier()
        if state:
            state.finish("base", time.perf_counter() - t0, path=str(base))
    samples = split_samples(preset, data_root, out)
    if segmenter is None:
        from medsam_agent_rt.segmenters import build_segmenter

        segmenter = build_segmenter(preset.segmenter, device=device)
    data_dir = out / "data"
    # --- data
    if stage("data"):
        t0 = time.perf_counter()
        if dist.master:
            _log(
                f"data: {len(samples['opening'])} opening turns, {len(samples['episode'])} expert episodes"
            )
            n_open = phantom_data.write_opening_turns(
                samples["opening"], data_dir, expert=preset.expert
            )
            counts = phantom_data.write_expert_episodes(
                samples["episode"],
                segmenter,
                data_dir,
                expert=preset.expert,
                min_final_iou=preset.min_final_iou,
            )
            state.finish("data", time.perf_counter() - t0, openings=n_open, **counts)
        barrier()
    if stop_after == "data":
        return {}
    val_hook = None
    if samples["val"]:
        val_hook = evaluate.validation_hook(
            samples["val"], segmenter, max_new_tokens=preset.eval_max_new_tokens
        )
    # --- sft
    sft_out = out / "sft"
    if stage("sft"):
        t0 = time.perf_counter()
        data = [
            str(p)
            for p in (
                data_dir / "openings.jsonl",
                *[data_dir / "episodes.jsonl"] * max(1, preset.episode_repeat),
            )
            if p.is_file()
        ]
        cfg = SFTConfig(model=str(base), data=data, out=str(sft_out), **preset.sft)
        _log(f"sft: {cfg.max_steps or cfg.epochs} steps/epochs on {data}")
        train_sft(cfg, val_hook, resume=True)
        if state:
            state.finish("sft", time.perf_counter() - t0, steps=trained_steps(out, "sft"))
        barrier()
    if stop_after == "sft":
        return {}
    # --- grpo
    grpo_out = out / "grpo"
    if stage("grpo"):
        t0 = time.perf_counter()
        cfg = GRPOConfig(model=str(sft_out / "model"), out=str(grpo_out), **preset.grpo)
        _log(f"grpo: {cfg.steps} steps x {cfg.prompts_per_step} prompts x G={cfg.group_size}")
        train_grpo(cfg, samples["grpo"], segmenter, val_hook, resume=True)
        if state:
            state.finish("grpo", time.perf_counter() - t0, steps=trained_steps(out, "grpo"))
        barrier()
    summary: dict[str, Any] = {}
    if dist.master:
        summary = _finish(preset, out, state, samples, segmenter, device)
        summary["total_seconds"] = time.perf_counter() - t_all
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    barrier()
    return summary


def eval_policy_sources(preset: Preset, out: Path, names: list[str], device: str) -> dict:
    """{name: policy source} for the eval stage: "sft" (OUT/sft/model) and "grpo" (OUT/package)
    and a shipped policy's name (e.g. phantom-tiny) as HF policies built on demand; any other
    name is a build_policy spec (oracle-box, expert, clicker:3, ...)."""
    from medsam_agent_rt.policies.registry import shipped_policy_spec

    def hf(path: Path) -> Any:
        from medsam_agent_rt.policies.hf import HFPolicy

        return lambda: HFPolicy(path, device=device, max_new_tokens=preset.eval_max_new_tokens)

    fixed = {"sft": out / "sft" / "model", "grpo": out / "package"}
    sources: dict[str, Any] = {}
    for name in names:
        path = fixed.get(name)
        shipped = shipped_policy_spec(name) if path is None else None
        if shipped is not None and not shipped.startswith("gguf:"):  # a shipped HF policy
            path = Path(shipped)
        sources[name] = name if path is None else hf(path)
    return sources


def _finish(
    preset: Preset, out: Path, state: _State, samples: dict, segmenter: Any, device: str
) -> dict:
    """package, eval and report (rank 0)."""
    from medsam_agent_rt.training import evaluate, report

    pkg = out / "package"
    if not state.done("package"):
        t0 = time.perf_counter()
        _log(f"package: {preset.package_dtype} copy of the GRPO policy in {pkg}")
        report.package_policy(out / "grpo" / "model", pkg, preset.package_dtype)
        state.finish("package", time.perf_counter() - t0, bytes=report.dir_size(pkg))
    eval_dir = out / "eval"
    if not state.done("eval"):
        t0 = time.perf_counter()
        eval_dir.mkdir(exist_ok=True)

        names = ["sft", "grpo", *preset.baselines]
        policies = eval_policy_sources(preset, out, names, device)
        _log(f"eval: {list(policies)} on {len(samples['test'])} held-out samples")
        results = evaluate.evaluate_policies(
            policies, samples["test"], segmenter, rows_path=eval_dir / "rows.jsonl"
        )
        if preset.data == "mixed":
            results = {**results, "per_split": per_split_results(eval_dir / "rows.jsonl", samples)}
        (eval_dir / "results.json").write_text(json.dumps(results, indent=1))
        state.finish("eval", time.perf_counter() - t0)
    results = json.loads((eval_dir / "results.json").read_text())
    t0 = time.perf_counter()
    curve = report.reward_curve(
        out / "grpo" / "log.jsonl", out / "grpo_reward_curve.png", title=preset.name
    )
    summary = report.summary(preset, out, state.data, results, curve)
    (pkg / "README.md").write_text(report.policy_readme(summary))
    (pkg / "NOTICE").write_text(report.NOTICE)
    state.finish("report", time.perf_counter() - t0)
    return summary


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="medsam_agent_rt.training.pipeline", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--preset", required=True, help="phantom-tiny | qwen3vl-8b-lora | qwen25vl-3b-lora"
    )
    parser.add_argument("--out", default=None, help="output directory (default runs/<preset>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run in --out"
    )
    parser.add_argument("--base-model", default=None, help="local checkpoint for the GPU presets")
    parser.add_argument(
        "--data-root", default=None, help="BiomedParse-style dataset root (GPU presets)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny model, few samples, same code path"
    )
    parser.add_argument(
        "--stop-after",
        default=None,
        choices=("data", "sft"),
        help="stop after this stage (continue later with --resume)",
    )
    parser.add_argument(
        "--sft-steps",
        type=int,
        default=None,
        help="SFT optimizer steps (default: the preset's); more than a finished run took "
        "continues its SFT from the checkpoint and reruns every later stage",
    )
    parser.add_argument(
        "--grpo-steps",
        type=int,
        default=None,
        help="GRPO steps (default: the preset's); more than a finished run took continues it",
    )
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    data_root = args.data_root
    if args.dry_run:
        preset = preset.dry_run()
    out = Path(args.out or f"runs/{preset.name}")
    if (
        out.exists()
        and any(out.iterdir())
        and not args.resume
        and (out / "pipeline.json").is_file()
    ):
        parser.error(f"{out} already holds a run: pass --resume to continue it, or another --out")
    if args.dry_run and data_root is None:
        out.mkdir(parents=True, exist_ok=True)
        data_root = dry_run_data(preset, out)
    summary = run_pipeline(
        preset,
        out,
        base_model=None if args.dry_run else args.base_model,
        data_root=data_root,
        stop_after=args.stop_after,
        sft_steps=args.sft_steps,
        grpo_steps=args.grpo_steps,
    )
    if summary:
        print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
