"""``medsam_agent_rt.segmenters`` (and its modeling / assets packages) import with NumPy alone."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "torch",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "transformers",
    "scipy",
    "cv2",
    "PIL",
    "skimage",
]


def test_segmenters_import_without_heavy_dependencies():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt.segmenters, medsam_agent_rt.segmenters.modeling\n"
        "import medsam_agent_rt.assets, medsam_agent_rt.segmenters.prompt_chain\n"
        "from medsam_agent_rt.segmenters import build_segmenter, PromptChain, FAMILIES\n"
        "from medsam_agent_rt.segmenters.safetensors_np import load_file\n"
        "from medsam_agent_rt.assets import lite_medsam_path\n"
        "w = load_file(lite_medsam_path())\n"
        "assert len(w) == 435\n"
        "try:\n"
        "    build_segmenter()\n"
        "except ImportError as e:\n"
        "    assert 'medsam-agent-rt[torch]' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('torch was not needed?')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in " + repr(HEAVY) + "))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
