"""``medsam-agent segment``: run the agent on one image and write the mask, the overlay strip of
every turn and the full trajectory record.

    medsam-agent segment IMAGE --target "left kidney in abdomen CT" [--policy SPEC] [--gt MASK]
        [--segmenter SPEC] [--backend auto|torch|onnx|trt] [--device cpu|cuda] [--max-turns N]
        [--strategy NAME] [--keep-largest] [--fill-holes [MAX_AREA]] [--window C,W|PRESET]
        [--frame K] [--axis A] [--slice K] [--out DIR] [--overwrite] [--json]

IMAGE: PNG / JPEG / TIFF / BMP, a DICOM file or series folder, a NIfTI volume (+ --axis/--slice).
With --propagate IMAGE is a volume (NIfTI or DICOM series folder): the episode runs on the key
slice (--slice; default the slice with the largest --gt area, else the middle one), its mask is
propagated through the volume (``commands._segment_volume``) and mask.nii.gz is the 3-D mask on
the input's voxel grid (DICOM series: the series geometry; plus mask_seg.dcm with the
``dicomseg`` extra), propagation.json holds per-slice scores and, with --gt (a mask volume of the
same shape), the 3-D Dice and NSD at 2 mm.
Progress and one line per turn go to stderr; stdout stays empty, or holds the JSON summary with
--json. Outputs (DIR, default ./medsam-agent-out/<image stem>, written all at once or not at
all): mask.png (0/255, the input's size), mask.nii.gz (NIfTI input: same grid and affine, the
mask in its slice), overlay.png (the first view, then the overlay after each action) and
trajectory.json (the episode record + the input's metadata; ``EpisodeRecord.load`` reads it).

Exit codes (the table of every command: ``commands._exit``): 0 the episode ran (ended by stop,
budget, or invalid_output after at least one action; the reason is in the summary); 1 the
policy itself failed (e.g. its model server is unreachable; nothing written); 2 bad arguments or
input (unreadable image, GT size mismatch, unknown policy / segmenter / backend, unsafe or
unwritable output folder; nothing written); 3 the episode ended with a tool error (outputs
written: the record says what failed); 4 no answer of the policy was a valid action (outputs
written: empty mask + record; stderr line ``medsam-agent segment: no-valid-action: ...``);
130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from medsam_agent_rt.commands import _exit
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER

NAME = "segment"
HELP = "Segment one image with the agent (policy + segmenter); write mask, overlay strip, record."

EXIT_OK, EXIT_POLICY_FAILED, EXIT_USAGE = _exit.OK, _exit.FAILED, _exit.USAGE
EXIT_TOOL_ERROR, EXIT_NO_VALID_ACTION = _exit.TOOL_ERROR, _exit.NO_VALID_ACTION
POLICY_HINT = (
    "'default' (the embedded policy), 'expert', 'clicker:K' or 'oracle-box' (GT-driven: with "
    "--gt MASK), a local Qwen-VL model directory, or the http://HOST:PORT/v1 URL of an "
    "OpenAI-compatible server"
)


# ----------------------------------------------------------------------------- arguments
def _window(text: str) -> str | tuple[float, float]:
    from medsam_agent_rt.io import parse_window

    try:
        return parse_window(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def configure(p: argparse.ArgumentParser) -> None:
    from medsam_agent_rt.commands._types import strategy as strategy_type
    from medsam_agent_rt.segmenters.prompt_chain import STRATEGIES
    from medsam_agent_rt.segmenters.registry import BACKENDS

    p.epilog = _exit.EPILOG
    p.add_argument("image", metavar="IMAGE", help="PNG/JPEG/TIFF, DICOM file or folder, NIfTI")
    p.add_argument("--target", required=True, help='what to segment, e.g. "liver in abdomen CT"')
    p.add_argument(
        "--policy",
        metavar="SPEC",
        help=f"who acts: {POLICY_HINT} (default: the embedded policy, when the package has one)",
    )
    p.add_argument(
        "--segmenter",
        metavar="SPEC",
        default=DEFAULT_SEGMENTER,
        help=f"'litemedsam' / 'litemedsam-click' (embedded; default {DEFAULT_SEGMENTER!r}), a "
        "SAM/MedSAM/LiteMedSAM checkpoint file, or an exported model directory",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto (default): the shipped ONNX graphs on ONNX Runtime on a CPU when onnxruntime "
        "is installed, else torch; `medsam-agent info` shows the pick",
    )
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--gt", metavar="MASK", help="ground-truth mask: enables per-turn Dice/IoU")
    p.add_argument(
        "--max-turns",
        metavar="N",
        type=_count(1),
        default=5,
        help="at most N box/point actions (default 5)",
    )
    p.add_argument(
        "--strategy",
        metavar="NAME",
        type=strategy_type,
        help="how prompts carry over turns: " + ", ".join(STRATEGIES) + ", each optionally "
        "followed by +zoom[:expansion=E] (corrections on a crop; README) (default: the "
        "segmenter family's measured best)",
    )
    p.add_argument("--keep-largest", action="store_true", help="final mask: largest component")
    p.add_argument(
        "--fill-holes",
        metavar="MAX_AREA",
        nargs="?",
        const=-1,  # no MAX_AREA: every hole (argparse would run a str const through type)
        type=_count(0),
        help="final mask: fill enclosed holes (of at most MAX_AREA pixels when given)",
    )
    p.add_argument(
        "--window",
        metavar="C,W|PRESET",
        type=_window,
        help="CT/MR intensity window: 'C,W' (a negative centre as --window=-600,1500) or a "
        "preset: abdomen, lung, bone, brain, liver, ... (default: the file's own window, else "
        "min-max)",
    )
    p.add_argument("--frame", metavar="K", type=_count(0), help="frame / page / 4-D volume")
    p.add_argument("--axis", metavar="A", type=int, choices=(0, 1, 2), help="NIfTI voxel axis")
    p.add_argument("--slice", metavar="K", type=_count(0), help="NIfTI slice / series position")
    p.add_argument(
        "--propagate",
        action="store_true",
        help="IMAGE is a volume (NIfTI, DICOM series folder): run the agent on the key slice "
        "(--slice; default the largest-GT slice with --gt, else the middle one), propagate its "
        "mask through the volume and write the 3-D mask (--gt: a mask volume, scored in 3-D)",
    )
    p.add_argument(
        "--reprompt",
        action="store_true",
        help="with --propagate: run the agent again on a slice where the tracker loses the "
        "target and go on from its mask",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default ./medsam-agent-out/<stem>)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


# ----------------------------------------------------------------------------- messages
def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _action_text(a: dict[str, Any]) -> str:
    name = a.get("name", "?")
    if name == "add_bbox":
        what = "box"
    elif name == "stop_action":
        return "stop"
    else:
        what = "+point" if a.get("positive", True) else "-point"
    clamped = " (clamped)" if a.get("clamped") else ""
    return f"{what} grid {a.get('grid')} -> px {a.get('pixels')}{clamped}"


def turn_line(turn: Any, max_actions: int) -> str:
    """One line per policy call: action (grid and pixels), mask stats, Dice, timings."""
    t = turn.timings
    preview = t.get("preview", 0.0)
    times = f"policy {_ms(t.get('policy', 0.0))}"
    if preview:
        times += f" (tool previews {_ms(preview)})"
    if turn.outcome == "executed":
        times += f", tool {_ms(t.get('tool'))}, render {_ms(t.get('render'))}"
        comp = "component" if turn.components == 1 else "components"
        body = (
            f"action {turn.step + 1}/{max_actions} {_action_text(turn.action or {})}: "
            f"area {turn.mask_area} px, {turn.components} {comp}"
        )
        if turn.dice is not None:
            body += f", Dice {turn.dice:.3f}"
    elif turn.outcome == "stop":
        body = "stop_action"
    elif turn.outcome == "refused_stop":
        body = "stop_action refused (no action yet): asking again"
    elif turn.outcome == "invalid":
        body = f"invalid output ({turn.parse_error}): {turn.parse_detail or turn.text[:60]!r}"
    else:
        body = f"tool error on {_action_text(turn.action or {})}: {turn.tool_error}"
    return f"turn {turn.index + 1}: {body} [{times}]"


def no_valid_action(record: Any) -> bool:
    """The episode ended because the policy's answers were invalid before any action ran."""
    return record.end_reason == "invalid_output" and not record.totals.get("actions", 0)


def summary(record: Any, args: argparse.Namespace, out: Path | None, extra: dict) -> dict:
    """The run's summary (printed as one line, or as JSON with --json)."""
    final, totals = record.final, record.totals
    return {
        "image": str(args.image),
        "target": record.target,
        "policy": record.policy,
        "segmenter": record.segmenter,
        "backend": record.backend,
        "device": args.device,
        "strategy": record.strategy,
        "end_reason": record.end_reason,
        "outcome": "no_valid_action" if no_valid_action(record) else record.end_reason,
        "error": record.error,
        "actions": totals.get("actions", 0),
        "policy_calls": totals.get("policy_calls", 0),
        "final": final,
        "dice": final.get("dice"),
        "iou": final.get("iou"),
        "seconds": {**totals.get("seconds", {}), **extra.get("seconds", {})},
        "out": None if out is None else str(out),
        "files": extra.get("files", []),
        "exit_code": extra.get("exit_code", EXIT_OK),
    }


def summary_line(s: dict) -> str:
    f, sec = s["final"], s["seconds"]
    comp = "component" if f.get("components") == 1 else "components"
    line = (
        f"done: {s['end_reason']} after {s['actions']} action(s), {s['policy_calls']} policy "
        f"call(s); final mask {f.get('area')} px, {f.get('components')} {comp}"
    )
    if f.get("postprocess"):
        line += f" ({'+'.join(f['postprocess'])}; raw {f.get('raw_area')} px)"
    if s["dice"] is not None:
        line += f"; Dice {s['dice']:.3f}, IoU {s['iou']:.3f}"
    line += (
        f"; {_ms(sec.get('episode'))} (load {_ms(sec.get('load'))}, "
        f"encode {_ms(sec.get('encode'))})"
    )
    if s["error"]:
        line += f"; tool error: {s['error']}"
    if s["out"]:
        line += f" -> {s['out']}"
    return line


# ----------------------------------------------------------------------------- steps
def _read_input(args: argparse.Namespace):
    from medsam_agent_rt.io import read_image

    try:
        return read_image(
            args.image,
            frame=args.frame,
            window=args.window,
            axis=args.axis,
            slice_index=args.slice,
        )
    except FileNotFoundError:
        raise _usage(f"IMAGE {args.image}: no such file or directory") from None
    except (ValueError, ImportError, OSError) as exc:  # ImageReadError is a ValueError
        raise _usage(f"IMAGE {exc}") from None


def _build_policy(spec: str, args: argparse.Namespace):
    from medsam_agent_rt.policies import build_policy

    kwargs = {"device": args.device} if Path(spec).is_dir() else {}
    try:
        return build_policy(spec, **kwargs)
    except Exception as exc:  # noqa: BLE001 - unknown spec, missing extra, broken model folder
        raise _usage(f"--policy {spec!r}: {type(exc).__name__}: {exc}") from None


def _build_segmenter(args: argparse.Namespace) -> tuple[Any, float]:
    """(segmenter, seconds it took to build)."""
    from medsam_agent_rt.segmenters import build_segmenter
    from medsam_agent_rt.segmenters.registry import resolve_backend

    backend = resolve_backend(args.segmenter, args.backend, args.device)
    _say(f"loading segmenter {args.segmenter} ({backend}, {args.device}) ...")
    t0 = time.perf_counter()
    try:
        seg = build_segmenter(args.segmenter, backend=args.backend, device=args.device)
        return seg, time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - unknown spec, backend not built, no CUDA, ...
        raise _usage(
            f"--segmenter {args.segmenter!r} (backend {args.backend}, device {args.device}): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _input_paths(args: argparse.Namespace, spec: str) -> tuple[str, ...]:
    """Every file or folder the run reads (the output folder must hold none of them)."""
    named = (args.image, args.gt, spec, args.segmenter)
    return tuple(str(p) for p in named if p and Path(str(p)).exists())


def _usage(message: str) -> Exception:
    from medsam_agent_rt.commands._segment_io import UsageError

    return UsageError(message)


def run(args: argparse.Namespace) -> int:
    from medsam_agent_rt.commands._segment_io import UsageError

    try:
        return _run(args)
    except UsageError as exc:
        return _fail(args, EXIT_USAGE, str(exc))
    except (KeyboardInterrupt, SystemExit):
        raise
    except MemoryError:
        return _fail(args, EXIT_USAGE, "out of memory (input too large for this machine)")
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user; the type is named
        return _fail(args, EXIT_POLICY_FAILED, f"unexpected {type(exc).__name__}: {exc}")


def _fail(args: argparse.Namespace, code: int, message: str) -> int:
    """Report an error on stderr (and as JSON on stdout with --json); returns ``code``."""
    _say(f"medsam-agent segment: error: {message}")
    if getattr(args, "json", False):
        print(json.dumps({"exit_code": code, "error": message}, indent=2))
    return code


def _run(args: argparse.Namespace) -> int:
    from medsam_agent_rt.commands._segment_io import check_out_dir, default_out_dir, read_gt
    from medsam_agent_rt.episode import Episode
    from medsam_agent_rt.io.atomic import UnsafeOutputError
    from medsam_agent_rt.io.outputs import write_outputs
    from medsam_agent_rt.policies import default_policy_spec
    from medsam_agent_rt.session_config import SessionConfig

    if args.reprompt and not args.propagate:
        raise _usage("--reprompt re-invokes the agent during propagation: it needs --propagate")
    if not args.target.strip():
        raise _usage("--target must describe the structure, e.g. 'left kidney in abdomen CT'")
    spec = args.policy or default_policy_spec()
    if spec is None:
        raise _usage(
            f"no --policy given and this package embeds no default policy yet; pass --policy "
            f"{POLICY_HINT}"
        )
    try:  # every argument is checked before any work
        config = SessionConfig(
            max_actions=args.max_turns,
            keep_largest=args.keep_largest,
            fill_holes=args.fill_holes is not None,
            max_hole_area=args.fill_holes if (args.fill_holes or 0) >= 0 else None,
            strategy=args.strategy,
        )
    except ValueError as exc:
        raise _usage(f"--max-turns / clean-up options: {exc}") from None
    out = Path(args.out) if args.out else default_out_dir(args.image)
    inputs = _input_paths(args, spec)
    check_out_dir(out, args.overwrite, inputs)
    volume = gt_volume = None
    if args.propagate:
        from medsam_agent_rt.commands import _segment_volume

        volume, gt_volume = _segment_volume.read_volume_input(args)
        image = volume.key
        gt = None if gt_volume is None else gt_volume[image.slice_index]
    else:
        image = _read_input(args)
        gt = read_gt(args.gt, image) if args.gt else None
    model_policy = Path(spec).is_dir()  # loading it takes long: the segmenter is checked first
    segmenter, load_s = _build_segmenter(args) if model_policy else (None, 0.0)
    policy = _build_policy(spec, args)
    name = getattr(policy, "spec", None) or getattr(policy, "name", spec)
    if getattr(policy, "requires_gt", False):
        if gt is None:
            raise _usage(
                f"policy {name!r} is GT-driven (it acts from the ground truth): pass --gt MASK, "
                f"or use a model policy ({POLICY_HINT})"
            )
        if not gt.any():
            where = "" if volume is None else f" on the key slice {image.slice_index}"
            raise _usage(
                f"--gt {args.gt}: the mask is empty{where}; policy {name!r} needs a target"
            )
    (h, w), m = image.shape, image.mapping
    _say(f"image: {image.path} ({image.format}, {w}x{h}, intensity {m.kind}/{m.source})")
    if segmenter is None:
        segmenter, load_s = _build_segmenter(args)
    _say(
        f"segmenter ready in {_ms(load_s)}; policy {name}; target {args.target!r}; "
        f"up to {config.max_actions} actions"
    )

    episode = Episode(
        segmenter,
        policy,
        config,
        tool_spec=args.segmenter,
        on_turn=lambda turn: _say(turn_line(turn, config.max_actions)),
    )
    try:
        mask, record = episode.run(image.rgb, args.target, gt, image_id=str(args.image))
    except Exception as exc:  # noqa: BLE001 - the policy raised (server down, model crash)
        return _fail(
            args, EXIT_POLICY_FAILED, f"the policy {name!r} failed: {type(exc).__name__}: {exc}"
        )
    record.source = {
        "image": image.to_dict(),
        "gt": None if args.gt is None else str(args.gt),
        "device": args.device,
    }
    code = EXIT_TOOL_ERROR if record.end_reason == "tool_error" else EXIT_OK
    if no_valid_action(record):
        code = EXIT_NO_VALID_ACTION
    extra, report = {}, None
    if volume is not None:
        _say(f"propagating through {volume.depth} slices from slice {image.slice_index} ...")
        try:
            reprompt = None
            if args.reprompt:
                reprompt = _segment_volume.agent_reprompt(
                    lambda: Episode(segmenter, policy, config, tool_spec=args.segmenter),
                    volume,
                    args.target,
                    gt_volume,
                    bool(getattr(policy, "requires_gt", False)),
                )
            mask_3d, report = _segment_volume.propagate(
                volume, mask, segmenter, gt_volume, reprompt
            )
        except ValueError as exc:  # e.g. a tracker that does not fit the segmenter
            raise _usage(f"--propagate: {exc}") from None
        extra = _segment_volume.output_writers(volume, mask_3d, report, args.target)
    try:
        files = write_outputs(out, image, mask, record, args.overwrite, protect=inputs, extra=extra)
    except FileExistsError as exc:
        raise _usage(f"--out {out}: {exc.strerror or exc}; pass --overwrite") from None
    except UnsafeOutputError as exc:  # the folder changed while the episode ran
        raise _usage(str(exc)) from None
    except OSError as exc:  # permissions, disk full: nothing was left behind
        raise _usage(f"--out {out}: cannot write the outputs ({exc})") from None
    result = summary(
        record, args, out, {"seconds": {"load": load_s}, "files": files, "exit_code": code}
    )
    _say(summary_line(result))
    if report is not None:
        result["volume"] = _segment_volume.volume_summary(report, files)
        _say(_segment_volume.summary_line(report, out))
    if code == EXIT_NO_VALID_ACTION:
        last = next((t for t in reversed(record.turns) if t.outcome == "invalid"), None)
        why = f"{last.parse_error}: {last.parse_detail or ''}"[:200] if last else "?"
        _say(
            f"medsam-agent segment: no-valid-action: none of the {len(record.turns)} answer(s) "
            f"of the policy {name!r} was a valid action (last: {why}); the mask is empty"
        )
    if args.json:
        print(json.dumps(result, indent=2))
    return code
