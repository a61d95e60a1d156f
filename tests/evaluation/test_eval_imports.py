"""The harness and the trajectory generator import with NumPy alone (heavy dependencies are
loaded by the parts that run models, draw plots or write images)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torch", "onnxruntime", "transformers", "scipy", "cv2", "PIL", "matplotlib", "tqdm"]


def test_imports_need_numpy_only():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HEAVY!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import medsam_agent_rt.evaluation, medsam_agent_rt.commands.eval\n"
        "import medsam_agent_rt.training.trajectories\n"
        "from medsam_agent_rt.evaluation import summarise\n"
        "print(summarise([], 5)['n_samples'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
