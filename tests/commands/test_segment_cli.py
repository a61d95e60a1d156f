"""``medsam-agent segment`` end to end on real inputs: a demo image (downscaled to 256 px), a
NIfTI volume built from it, pydicom's bundled CT_small.dcm. In-process runs share one embedded
LiteMedSAM (its embedding cache saves encoder runs); one run goes through a subprocess.

Checks are against independent computations: the mask PNG against the record's RLE and the
final stats, Dice against a NumPy count, the strip's tiles against the protocol's own rendering
of each recorded mask, the NIfTI mask against the GT volume in voxel space (no layout code)."""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medsam_agent_rt.cli import main
from medsam_agent_rt.protocol import AddBox, Stop, format_action, render_observation, render_view
from medsam_agent_rt.segmenters.registry import DEFAULT_SEGMENTER
from medsam_agent_rt.trajectory import EpisodeRecord

CASE = ("06_CT_abdomen", "left+kidney", "left kidney in abdomen CT")
SIZE = 256


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo_case(demo_dir, tmp_path_factory):
    """(image.png, gt.png, target, rgb, gt) of one demo image at 256 px."""
    stem, target, text = CASE
    d = tmp_path_factory.mktemp("demo256")
    img = Image.open(demo_dir / "demo" / f"{stem}.png").convert("RGB")
    img = img.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    gt = Image.open(demo_dir / "demo_mask" / f"{stem}_{target}.png").convert("L")
    gt = np.asarray(gt.resize((SIZE, SIZE), Image.Resampling.NEAREST)) > 127
    img.save(d / "image.png")
    Image.fromarray(gt.astype(np.uint8) * 255).save(d / "gt.png")
    return d / "image.png", d / "gt.png", text, np.asarray(img), gt


@pytest.fixture(scope="module")
def shared_segmenter():
    from medsam_agent_rt.segmenters import build_segmenter

    return build_segmenter(DEFAULT_SEGMENTER)


@pytest.fixture
def reuse_segmenter(monkeypatch, shared_segmenter):
    """The CLI builds its segmenter through this one (what it asked for is recorded)."""
    import medsam_agent_rt.segmenters as segmenters

    asked = []

    def build(spec=DEFAULT_SEGMENTER, backend="auto", device="cpu", **kw):
        asked.append((spec, backend, device))
        assert (spec, backend, device) == (DEFAULT_SEGMENTER, "auto", "cpu")
        return shared_segmenter

    monkeypatch.setattr(segmenters, "build_segmenter", build)
    return asked


def _loopback(host) -> bool:
    if isinstance(host, str) and host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return isinstance(host, (bytes, str)) and str(host).startswith("/")


@pytest.fixture
def no_network(monkeypatch):
    """Any non-loopback connect / DNS lookup fails loudly and is recorded (as in
    tests/runtime/conftest.py)."""
    attempts = []
    real = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection)
    real_gai = socket.getaddrinfo

    def check(address):
        host = address[0] if isinstance(address, tuple) else address
        if not _loopback(host):
            attempts.append(address)
            raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (check(a), real[0](s, a))[1])
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: (check(a), real[1](s, a))[1])
    monkeypatch.setattr(
        socket, "create_connection", lambda a, *x, **k: (check(a), real[2](a, *x, **k))[1]
    )
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda h, *x, **k: (check((h,)), real_gai(h, *x, **k))[1]
    )
    return attempts


def run_cli(capsys, *argv):
    code = main(["segment", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def strip_geometry(n_tiles: int, view: int = 512) -> tuple[int, int, int]:
    """(columns, rows, gutter) the strip must use: <= 3 columns, balanced rows."""
    rows = math.ceil(n_tiles / 3)
    return math.ceil(n_tiles / rows), rows, max(4, view // 64)


# ----------------------------------------------------------------------------- runs
def test_expert_run_writes_consistent_outputs_offline(
    demo_case, reuse_segmenter, tmp_path, capsys, no_network
):
    image, gt_png, target, rgb, gt = demo_case
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, image, "--target", target, "--policy", "expert:box_prob=1,jitter_max=0.05",
        "--gt", gt_png, "--max-turns", 2, "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    assert no_network == []
    summary = json.loads(stdout)  # stdout holds the JSON summary and nothing else
    assert sorted(p.name for p in out.iterdir()) == ["mask.png", "overlay.png", "trajectory.json"]

    rec = EpisodeRecord.load(out / "trajectory.json")
    # the name repeats only the settings that differ from the defaults
    assert rec.target == target and rec.policy == "expert:jitter_max=0.05"
    assert rec.source["image"]["format"] == "png" and rec.source["image"]["shape"] == [SIZE, SIZE]
    assert rec.source["gt"] == str(gt_png)
    n_actions = rec.totals["actions"]
    assert 1 <= n_actions <= 2 and summary["actions"] == n_actions
    assert rec.executed()[0].action["name"] == "add_bbox"

    mask_png = np.asarray(Image.open(out / "mask.png"))
    assert mask_png.shape == (SIZE, SIZE) and set(np.unique(mask_png)) <= {0, 255}
    final = mask_png == 255
    assert np.array_equal(final, rec.masks()[-1])  # no clean-up asked: the last tool mask
    assert int(final.sum()) == rec.final["area"] == summary["final"]["area"]
    want_dice = 2 * (final & gt).sum() / (final.sum() + gt.sum())
    assert summary["dice"] == pytest.approx(want_dice, abs=1e-9)

    # the strip: 1 + actions tiles, each exactly the observation the policy saw
    strip = np.asarray(Image.open(out / "overlay.png").convert("RGB"))
    n = 1 + n_actions
    cols, rows, gutter = strip_geometry(n)
    assert strip.shape[1] == cols * 512 + (cols + 1) * gutter
    band, rest = divmod(strip.shape[0] - rows * 512 - (rows + 1) * gutter, rows)
    assert rest == 0 and 12 <= band <= 80
    view = render_view(rgb)
    tiles = [view] + [render_observation(view, m, rec.geometry) for m in rec.masks()]
    for k, tile in enumerate(tiles):
        x = gutter + (k % cols) * (512 + gutter)
        y = gutter + (k // cols) * (band + 512 + gutter) + band
        assert np.array_equal(strip[y : y + 512, x : x + 512], tile), f"tile {k}"

    lines = [ln for ln in stderr.splitlines() if ln.startswith("turn ")]
    assert len(lines) == len(rec.turns)
    assert "action 1/2 box grid [" in lines[0] and "Dice " in lines[0]
    assert any(
        ln.startswith("done: ") and f"{n_actions} action" in ln for ln in stderr.splitlines()
    )
    assert reuse_segmenter == [(DEFAULT_SEGMENTER, "auto", "cpu")]


def test_oracle_box_dice_in_the_summary_is_the_dice_of_mask_png(
    demo_case, reuse_segmenter, tmp_path, capsys
):
    from medsam_agent_rt import ops

    image, _, target, _, gt = demo_case
    rgba = np.zeros((*gt.shape, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = gt * 255, 255  # red on opaque black: alpha must not count
    gt_png = tmp_path / "gt_rgba.png"
    Image.fromarray(rgba, "RGBA").save(gt_png)
    out = tmp_path / "ob"
    code, stdout, stderr = run_cli(
        capsys, image, "--target", target, "--policy", "oracle-box", "--gt", gt_png,
        "--out", out, "--json", "--keep-largest", "--fill-holes",
    )  # fmt: skip
    assert code == 0, stderr
    s = json.loads(stdout)
    final = np.asarray(Image.open(out / "mask.png")) > 0
    assert s["end_reason"] == "stop" and s["actions"] == 1
    assert s["dice"] == pytest.approx(ops.dice(final, gt), abs=1e-9)
    assert s["dice"] == pytest.approx(2 * (final & gt).sum() / (final.sum() + gt.sum()))
    assert s["dice"] > 0.8  # LiteMedSAM from the GT box on a kidney
    assert s["final"]["postprocess"] == ["keep_largest", "fill_holes"]
    assert f"Dice {s['dice']:.3f}" in stderr.splitlines()[-1]


def _nifti_case(demo_case, directory: Path):
    """A 5-slice float32 HU volume whose slice 2 shows exactly the demo image under the window
    40,400 (so the shared segmenter's embedding cache serves it), and a GT volume holding the
    target in slice 2 only. Affine: voxel i runs to the patient's left, j anterior (0.8 mm),
    k superior (3 mm); the radiological display then has row r at j = n - 1 - r and column c at
    i = c, i.e. slice = image.T[:, ::-1]."""
    import nibabel as nib

    _, _, _, rgb, gt = demo_case
    hu = -160.0 + rgb[..., 0].astype(np.float32) * (400.0 / 255.0)  # window 40,400 inverted
    vol = np.stack([np.roll(hu.T[:, ::-1], 9 * (k - 2), axis=0) for k in range(5)], axis=2)
    gtv = np.zeros(vol.shape, np.uint8)
    gtv[:, :, 2] = gt.T[:, ::-1]
    affine = np.array(
        [[-0.8, 0, 0, 100.0], [0, 0.8, 0, -50.0], [0, 0, 3.0, 20.0], [0, 0, 0, 1]], float
    )
    nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), directory / "ct.nii.gz")
    nib.save(nib.Nifti1Image(gtv, affine), directory / "ct_gt.nii.gz")
    return directory / "ct.nii.gz", directory / "ct_gt.nii.gz", gtv.astype(bool), affine


def test_nifti_input_writes_the_mask_into_its_slice_with_the_input_affine(
    demo_case, reuse_segmenter, tmp_path, capsys
):
    nib = pytest.importorskip("nibabel")
    from medsam_agent_rt.trajectory import image_digest

    image, gt_path, gtv, affine = _nifti_case(demo_case, tmp_path)
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, image, "--target", "left kidney", "--policy", "oracle-box", "--gt", gt_path,
        "--slice", 2, "--window", "40,400", "--out", out, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    rec = EpisodeRecord.load(out / "trajectory.json")
    assert rec.image_sha256 == image_digest(demo_case[3])  # the displayed slice is the demo view
    assert (out / "mask.nii.gz").is_file()
    m = nib.load(out / "mask.nii.gz")
    assert np.allclose(m.affine, affine) and m.shape == gtv.shape
    vol = np.asarray(m.dataobj) > 0
    assert not vol[:, :, [0, 1, 3, 4]].any()  # only the slice the image came from
    png = np.asarray(Image.open(out / "mask.png")) > 0
    assert vol.sum() == png.sum() > 0
    dice = 2 * (vol & gtv).sum() / (vol.sum() + gtv.sum())  # voxel space: no layout code
    assert dice == pytest.approx(json.loads(stdout)["dice"]) and dice > 0.8
    src = rec.source["image"]
    assert src["format"] == "nifti" and src["slice_index"] == 2 and src["axis"] == 2
    assert src["mapping"]["center"] == 40 and src["mapping"]["width"] == 400


def test_dicom_ct_small_with_the_abdomen_window_in_a_subprocess(tmp_path):
    """The one run through ``python -m medsam_agent_rt``: a scripted (non-GT) policy, no --gt,
    no --json (stdout stays empty)."""
    import importlib.util

    spec = importlib.util.find_spec("pydicom")
    if spec is None:
        pytest.skip("needs pydicom")
    dcm = Path(list(spec.submodule_search_locations)[0]) / "data" / "test_files" / "CT_small.dcm"
    if not dcm.is_file():
        pytest.skip("pydicom's bundled CT_small.dcm is not installed")
    script = tmp_path / "script.json"
    texts = [format_action(AddBox(300, 300, 700, 700)), format_action(Stop())]
    script.write_text(json.dumps(texts))
    proc = subprocess.run(
        [sys.executable, "-m", "medsam_agent_rt", "segment", str(dcm), "--target",
         "liver in abdomen CT", "--policy", f"replay:{script}", "--window", "abdomen"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    out = tmp_path / "medsam-agent-out" / "CT_small"  # the default output folder
    assert sorted(p.name for p in out.iterdir()) == ["mask.png", "overlay.png", "trajectory.json"]
    rec = EpisodeRecord.load(out / "trajectory.json")
    src = rec.source["image"]
    assert src["format"] == "dicom" and src["shape"] == [128, 128]
    assert src["mapping"]["source"] == "preset:abdomen" and src["mapping"]["center"] == 40
    assert rec.end_reason == "stop" and rec.turns[0].dice is None
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (128, 128) and int((mask > 0).sum()) == rec.final["area"]
    assert "turn 1: action 1/5 box grid [300, 300, 700, 700] -> px [" in proc.stderr
    assert "done: stop after 1 action(s)" in proc.stderr and "Dice" not in proc.stderr


@pytest.fixture
def chat_server():
    """A loopback OpenAI-compatible server answering scripted assistant texts in order."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    requests, script = [], []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # /v1/models: the policy asks which model is served
            requests.append((self.path, None))
            self._send({"data": [{"id": "served-model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append((self.path, body))
            text = script.pop(0) if script else "no script left"
            self._send({"choices": [{"message": {"role": "assistant", "content": text}}]})

        def _send(self, reply):
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", requests, script
    httpd.shutdown()
    httpd.server_close()


def test_a_model_server_policy_drives_the_episode_over_loopback_only(
    demo_case, reuse_segmenter, chat_server, tmp_path, capsys, no_network
):
    url, requests, script = chat_server
    script += [format_action(AddBox(300, 550, 450, 720)), format_action(Stop())]
    image, _, target, _, _ = demo_case
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        capsys, image, "--target", target, "--policy", url, "--out", out, "--json"
    )
    assert code == 0, stderr
    assert no_network == []
    s = json.loads(stdout)
    assert s["policy"] == url and s["end_reason"] == "stop" and s["actions"] == 1
    assert s["dice"] is None  # no --gt: no score
    chats = [body for path, body in requests if path == "/v1/chat/completions"]
    assert len(chats) == 2 and all(body["model"] == "served-model" for body in chats)
    images = [
        [c for m in body["messages"] for c in (m["content"] if isinstance(m["content"], list)
         else []) if c.get("type") == "image_url"]
        for body in chats
    ]  # fmt: skip
    assert [len(i) for i in images] == [1, 2]  # turn 2 also carries the overlay after the box
    assert target in json.dumps(chats[0])


# ----------------------------------------------------------------------------- exit codes
class FailingSegmenter:
    """Encodes fine, fails on every prompt: the episode ends with tool_error."""

    family, backend = "litemedsam", "fake"

    def encode(self, image):
        from medsam_agent_rt.segmenters import Encoded

        return Encoded(None, image.shape[:2], image.shape[:2], "k")

    def decode(self, encoded, **kwargs):
        raise RuntimeError("decoder exploded")


def test_tool_error_exits_3_and_still_writes_the_record(demo_case, monkeypatch, tmp_path, capsys):
    import medsam_agent_rt.segmenters as segmenters

    monkeypatch.setattr(segmenters, "build_segmenter", lambda *a, **k: FailingSegmenter())
    image, gt_png, target, _, _ = demo_case
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        capsys, image, "--target", target, "--policy", "oracle-box", "--gt", gt_png, "--out", out
    )
    assert code == 3
    rec = EpisodeRecord.load(out / "trajectory.json")
    assert rec.end_reason == "tool_error" and "decoder exploded" in rec.error
    assert not (np.asarray(Image.open(out / "mask.png")) > 0).any()
    assert "tool error" in stderr


def test_a_failing_policy_exits_1_and_writes_nothing(demo_case, reuse_segmenter, tmp_path, capsys):
    image, _, target, _, _ = demo_case
    script = tmp_path / "short.json"
    script.write_text(json.dumps([format_action(AddBox(100, 100, 600, 600))]))  # then runs out
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        capsys, image, "--target", target, "--policy", f"replay:{script}", "--out", out
    )
    assert code == 1
    assert "policy 'replay:" in stderr and "exhausted" in stderr
    assert not out.exists()


def test_interrupt_while_writing_leaves_nothing_behind(
    demo_case, reuse_segmenter, monkeypatch, tmp_path, capsys
):
    import medsam_agent_rt.io as mio

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after mask.png was written into the staging folder

    monkeypatch.setattr(mio, "write_overlay_strip", interrupted)
    image, gt_png, target, _, _ = demo_case
    out = tmp_path / "new" / "deeper" / "out"
    code, _, stderr = run_cli(
        capsys, image, "--target", target, "--policy", "oracle-box", "--gt", gt_png, "--out", out
    )
    assert code == 130 and "interrupted" in stderr
    assert list(tmp_path.iterdir()) == []  # no staging folder, no half-made parents


@pytest.fixture
def bad_inputs(demo_case, tmp_path, monkeypatch):
    import medsam_agent_rt.policies as policies

    monkeypatch.chdir(tmp_path)  # the default output folder would appear here
    monkeypatch.setattr(policies, "default_policy_spec", lambda: None)  # none embedded
    image, gt_png, target, _, _ = demo_case
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 120), np.uint8)).save(small)
    empty_gt = tmp_path / "empty.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(empty_gt)
    return {"image": image, "gt": gt_png, "target": target, "garbage": garbage,
            "small": small, "empty": empty_gt}  # fmt: skip


ERRORS = {
    "missing image": (["{tmp}/nope.png", "--policy", "expert", "--gt", "{gt}"], "no such file"),
    "unreadable image": (["{garbage}", "--policy", "expert", "--gt", "{gt}"], "garbage.png"),
    "gt size mismatch": (["{image}", "--policy", "expert", "--gt", "{small}"], "120x100"),
    "missing gt file": (["{image}", "--policy", "expert", "--gt", "{tmp}/no.png"], "--gt"),
    "empty gt": (["{image}", "--policy", "expert", "--gt", "{empty}"], "empty"),
    "gt-driven without gt": (["{image}", "--policy", "clicker:3"], "pass --gt MASK"),
    "unknown policy": (["{image}", "--policy", "wizard"], "unknown policy spec 'wizard'"),
    "unknown segmenter": (
        ["{image}", "--policy", "oracle-box", "--gt", "{gt}", "--segmenter", "{tmp}/x.pth"],
        "--segmenter",
    ),
    "no policy and none embedded": (["{image}"], "--policy"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_bad_input_exits_2_with_a_clear_message_and_no_output(case, bad_inputs, tmp_path, capsys):
    argv, expected = ERRORS[case]
    argv = [a.format(tmp=tmp_path, **bad_inputs) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, stderr = run_cli(capsys, *argv, "--target", bad_inputs["target"])
    assert code == 2
    assert stdout == ""
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("medsam-agent segment: error: ") and expected in last, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written anywhere


def test_an_existing_output_folder_is_kept_without_overwrite(bad_inputs, tmp_path, capsys):
    out = tmp_path / "results"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, stdout, stderr = run_cli(
        capsys, bad_inputs["image"], "--target", "t", "--policy", "oracle-box",
        "--gt", bad_inputs["gt"], "--out", out, "--json",
    )  # fmt: skip
    assert code == 2 and "--overwrite" in stderr
    assert json.loads(stdout) == {"exit_code": 2, "error": stderr.strip().split("error: ", 1)[1]}
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_argument_errors_exit_2(capsys):
    for argv in (["x.png"], ["x.png", "--target", "t", "--window", "lungs?"]):
        with pytest.raises(SystemExit) as info:
            main(["segment", *argv])
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--target" in err and "window preset must be one of" in err


def test_strategy_takes_a_zoom_suffix_and_rejects_junk(
    demo_case, reuse_segmenter, tmp_path, capsys
):
    with pytest.raises(SystemExit) as info:
        main(["segment", "x.png", "--target", "t", "--strategy", "box+zoom"])
    assert info.value.code == 2
    assert "strategy must be one of" in capsys.readouterr().err
    image, gt_png, target, _, _ = demo_case
    code, stdout, stderr = run_cli(
        capsys, image, "--target", target, "--policy", "clicker:2", "--gt", gt_png,
        "--strategy", "box+all_clicks+prev_logits+zoom:expansion=2", "--out", tmp_path / "o",
        "--json",
    )  # fmt: skip
    assert code == 0, stderr
    rec = EpisodeRecord.load(tmp_path / "o" / "trajectory.json")
    assert rec.strategy == "box+all_clicks+prev_logits+zoom:expansion=2"
