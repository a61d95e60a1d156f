"""Where the benchmarks find the shared BiomedParse demo set (one lookup for all of them)."""

from __future__ import annotations

from pathlib import Path


def demo_root(data: str | Path | None, who: str) -> Path:
    """``data`` if given, else the demo folder ``medsam_agent_rt.evaluation.find_demo`` finds
    ($MSRT_SHARED_DATA/biomedparse-demo, or shared/data/biomedparse-demo in the current folder,
    the checkout or any parent). Exits with a message naming ``who`` and where it looked."""
    from medsam_agent_rt.evaluation.datasets import find_demo

    if data is not None:
        root = Path(data)
        if not ((root / "demo").is_dir() and (root / "demo_mask").is_dir()):
            raise SystemExit(f"{who}: {root} is not a demo folder (it needs demo/ and demo_mask/)")
        return root
    try:
        return find_demo()
    except FileNotFoundError as e:
        raise SystemExit(f"{who}: {e}; or pass --data DIR") from None
