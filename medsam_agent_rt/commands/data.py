"""``medsam-agent data``: write procedural phantoms, summarise a dataset, draw a contact sheet.

medsam-agent data phantoms --out DIR --n N --seed S [--size 512] [--modalities ct,mri]
                           [--splits train=0.8,val=0.1,test=0.1] [--workers W]
medsam-agent data summary ROOT [--json]
medsam-agent data preview OUT.png [--modalities ...] [--n 4] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

NAME = "data"
HELP = "Datasets: write procedural phantoms, summarise a dataset folder, preview phantoms."


def _modalities(text: str | None) -> list[str] | None:
    if text is None:
        return None
    mods = [m.strip() for m in text.split(",") if m.strip()]
    if not mods:
        raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. ct,mri,xray")
    return mods


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    ph = sub.add_parser(
        "phantoms",
        help="write phantoms in the BiomedParse-style layout",
        description="Write N phantoms per modality (seeds S..S+N-1) under "
        "OUT/phantom-<modality>/{split}/, {split}_mask/, {split}.json. "
        "Re-running with the same parameters resumes and skips what exists.",
    )
    ph.add_argument("--out", required=True, help="output root folder")
    ph.add_argument("--n", type=int, required=True, help="images per modality")
    ph.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    ph.add_argument("--size", default="512", help="N or HxW in pixels (default 512)")
    ph.add_argument(
        "--modalities",
        type=_modalities,
        default=None,
        help="comma-separated subset (ct,mri,xray,ultrasound,endoscopy,fundus,"
        "dermoscopy,pathology; default all)",
    )
    ph.add_argument(
        "--splits",
        default="train=0.8,val=0.1,test=0.1",
        help="split fractions over consecutive seeds (default train=0.8,val=0.1,test=0.1)",
    )
    ph.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    ph.add_argument("--no-progress", action="store_true", help="no progress bar")

    sq = sub.add_parser(
        "sequences",
        help="write phantom volumes (NIfTI + GT) and videos (frame folders + masks) for tracking",
    )
    sq.add_argument("--out", required=True, help="output folder")
    sq.add_argument("--n", type=int, default=1, help="volumes and videos each (default 1)")
    sq.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    sq.add_argument("--size", type=int, default=128, help="slice / frame side in px (default 128)")
    sq.add_argument("--depth", type=int, default=32, help="slices / frames (default 32)")

    sm = sub.add_parser("summary", help="count samples per dataset, split and target")
    sm.add_argument("root", help="a BiomedParse-style root or the demo folder")
    sm.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sm.add_argument("--no-check", action="store_true", help="do not check that files exist")

    pv = sub.add_parser("preview", help="contact sheet of phantoms with mask outlines (PNG)")
    pv.add_argument("out", help="PNG file to write")
    pv.add_argument("--modalities", type=_modalities, default=None, help="default: all")
    pv.add_argument("--n", type=int, default=4, help="phantoms per modality (default 4)")
    pv.add_argument("--size", type=int, default=256, help="tile size in pixels (default 256)")
    pv.add_argument("--seed", type=int, default=0, help="first seed (default 0)")


def _phantoms(args: argparse.Namespace) -> int:
    from medsam_agent_rt.data.writer import write_phantom_dataset

    report = write_phantom_dataset(
        args.out,
        n=args.n,
        seed=args.seed,
        size=args.size,
        modalities=args.modalities,
        splits=args.splits,
        workers=args.workers,
        show_progress=not args.no_progress,
    )
    skipped = sum(report.skipped.values())
    print(f"wrote {report.total_written} images ({skipped} already there) under {args.out}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from medsam_agent_rt.data import counts, load_samples

    samples = load_samples(args.root, check_files=not args.no_check)
    table = counts(samples)
    images = len({s.image_id for s in samples})
    modalities: dict[str, int] = {}
    for s in samples:
        modalities[s.modality] = modalities.get(s.modality, 0) + 1
    if args.json:
        print(
            json.dumps(
                {
                    "samples": len(samples),
                    "images": images,
                    "modalities": modalities,
                    "datasets": table,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return 0
    print(f"{args.root}: {len(samples)} samples in {images} images")
    print("modalities: " + ", ".join(f"{m} {k}" for m, k in sorted(modalities.items())))
    for ds, splits in table.items():
        for split, targets in splits.items():
            total = sum(targets.values())
            print(f"{ds}/{split}: {total}")
            width = max(len(t) for t in targets)
            for t, k in sorted(targets.items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"    {t:<{width}}  {k}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from medsam_agent_rt.data.phantoms import PHANTOM_MODALITIES
    from medsam_agent_rt.data.preview import save_contact_sheet

    if args.n < 1:
        raise ValueError(f"n: expected an int >= 1, got {args.n}")
    mods = args.modalities or list(PHANTOM_MODALITIES)
    save_contact_sheet(args.out, mods, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {args.out} ({len(mods)} rows x {args.n} phantoms, plain | outlined)")
    return 0


def _sequences(args: argparse.Namespace) -> int:
    from medsam_agent_rt.data.sequences import write_sequences

    written = write_sequences(args.out, args.n, args.seed, args.size, args.depth)
    print(f"wrote {len(written)} sequences under {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    action = {
        "phantoms": _phantoms,
        "summary": _summary,
        "preview": _preview,
        "sequences": _sequences,
    }[args.data_command]
    try:
        return action(args)
    except BrokenPipeError:  # `... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, FileNotFoundError) as exc:
        print(f"medsam-agent data {args.data_command}: error: {exc}", file=sys.stderr)
        return 2
