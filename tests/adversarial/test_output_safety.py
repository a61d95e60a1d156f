"""Output-folder safety: ``--out`` is checked before any work, and a folder that is (or holds)
the working directory or an input — as given or through a symlink — is refused even with
--overwrite (it would be replaced as a whole, deleting the inputs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _fakes import write_case

from medsam_agent_rt.cli import main
from medsam_agent_rt.io.atomic import UnsafeOutputError, atomic_directory, check_output_dir


def segment(capsys, *argv):
    code = main(["segment", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_out_holding_the_inputs_is_refused_and_nothing_is_lost(tmp_path, capsys, fake_segmenter):
    image, gt = write_case(tmp_path / "work")
    (tmp_path / "work" / "notes.txt").write_text("unrelated, precious")
    before = tree(tmp_path / "work")
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", tmp_path / "work", "--overwrite",
    )  # fmt: skip
    assert code == 2, err
    assert "contains the input" in err and str(image) in err
    assert tree(tmp_path / "work") == before
    assert fake_segmenter.episodes == 0  # refused before any work


def test_out_dot_is_refused_before_the_episode(tmp_path, capsys, monkeypatch, fake_segmenter):
    image, gt = write_case(tmp_path / "in")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "keep.txt").write_text("x")
    monkeypatch.chdir(cwd)
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", ".", "--overwrite",
    )  # fmt: skip
    assert code == 2 and "working directory" in err and "Traceback" not in err
    assert (cwd / "keep.txt").read_text() == "x"
    assert fake_segmenter.episodes == 0


def test_out_parent_of_the_cwd_is_refused(tmp_path, capsys, monkeypatch, fake_segmenter):
    image, gt = write_case(tmp_path / "in")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", tmp_path / "a", "--overwrite",
    )  # fmt: skip
    assert code == 2 and "working directory" in err
    assert deep.is_dir()


def test_out_reaching_an_input_through_a_symlink_is_refused(tmp_path, capsys, fake_segmenter):
    data = tmp_path / "data"
    image, gt = write_case(data)
    link = tmp_path / "results"
    link.symlink_to(data, target_is_directory=True)  # --out is a link to the inputs' folder
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", link, "--overwrite",
    )  # fmt: skip
    assert code == 2 and "contains the input" in err
    assert image.is_file() and gt.is_file()
    # the input given through a link that lives inside --out
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old result")
    (out / "in").symlink_to(data, target_is_directory=True)
    code, _, err = segment(
        capsys, out / "in" / "image.png", "--target", "t", "--policy", "oracle-box",
        "--gt", gt, "--out", out, "--overwrite",
    )  # fmt: skip
    assert code == 2 and "contains the input" in err
    assert image.is_file() and (out / "old.txt").is_file()


def test_unwritable_out_is_refused_before_the_episode(tmp_path, capsys, fake_segmenter):
    image, gt = write_case(tmp_path / "in")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", blocker / "sub",
    )  # fmt: skip
    assert code == 2 and "not a directory" in err
    assert fake_segmenter.episodes == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_refused_before_the_episode(tmp_path, capsys, fake_segmenter):
    image, gt = write_case(tmp_path / "in")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = segment(
            capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
            "--out", ro / "out",
        )  # fmt: skip
    finally:
        ro.chmod(0o755)
    assert code == 2 and "cannot create folders" in err
    assert fake_segmenter.episodes == 0


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (read-only for root)")
def test_read_only_mount_is_refused_even_for_root(tmp_path):
    with pytest.raises(UnsafeOutputError, match="cannot create folders"):
        check_output_dir(Path("/proc/self/medsam-out"))


def test_a_safe_overwrite_still_replaces_the_folder(tmp_path, capsys, fake_segmenter):
    image, gt = write_case(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code, _, err = segment(
        capsys, image, "--target", "t", "--policy", "oracle-box", "--gt", gt,
        "--out", out, "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["mask.png", "overlay.png", "trajectory.json"]
    assert fake_segmenter.episodes == 1


def test_atomic_directory_itself_never_replaces_the_cwd_or_protected_inputs(tmp_path, monkeypatch):
    """The guard sits where the folder is replaced, so API callers get it too."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.png").write_bytes(b"precious")
    monkeypatch.chdir(work)
    with pytest.raises(UnsafeOutputError, match="working directory"):
        with atomic_directory(work, overwrite=True) as tmp:
            (tmp / "x").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeOutputError, match="contains the input"):
        with atomic_directory(work, overwrite=True, protect=[work / "input.png"]) as tmp:
            (tmp / "x").write_text("x")
    assert (work / "input.png").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # no temporary left
