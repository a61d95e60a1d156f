"""``medsam_agent_rt.data`` (readers, phantoms, writer, CLI command) imports with NumPy alone:
Pillow and everything heavy are imported only when pixels are read, written or drawn."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "onnxruntime", "transformers", "scipy", "cv2", "PIL", "tqdm", "matplotlib"]


def test_import_with_numpy_alone():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt.data, medsam_agent_rt.data.phantoms, medsam_agent_rt.data.writer\n"
        "import medsam_agent_rt.data.preview, medsam_agent_rt.commands.data\n"
        "from medsam_agent_rt.data.phantoms import ct, mri, xray, ultrasound, endoscopy\n"
        "from medsam_agent_rt.data.phantoms import fundus, dermoscopy, pathology\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
