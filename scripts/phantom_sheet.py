"""Contact sheet of phantoms with mask outlines: python scripts/phantom_sheet.py OUT.png
[--modalities ct,mri] [--n 4] [--size 256] [--seed 0]. Thin wrapper over
``medsam_agent_rt.data.preview``."""

from __future__ import annotations

import sys

from medsam_agent_rt.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["data", "preview", *sys.argv[1:]]))
