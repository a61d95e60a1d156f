"""Shard files: append-only JSONL of result rows plus a meta JSON per (rank, world size).

::

    OUT/shards/rank000-of-002.json     {"config": {...}, "rank": 0, "world_size": 2,
                                        "n_samples": N, "versions": {...}}
    OUT/shards/rank000-of-002.jsonl    one result row per line, appended as samples finish

Rows are appended whole (one write, flushed and fsynced), so an interrupted run leaves at most a
torn last line, which readers ignore and writers cut off before appending again. A shard is
resumed when its meta matches the new run's config (samples whose episode failed, rows with
``skipped == "failed"``, are run again and the new row replaces the failed one); merging checks that every shard belongs to
the same run (config, sample count and sample-list digest) and that no sample appears twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SHARD_DIR = "shards"
FAILED = "failed"  # row["skipped"] of a sample whose episode raised (the row holds the error)


def shard_stem(rank: int, world_size: int) -> str:
    return f"rank{rank:03d}-of-{world_size:03d}"


def repair_tail(path: Path) -> int:
    """Cut a torn last line (no trailing newline) off ``path``; returns the bytes removed."""
    if not path.is_file():
        return 0
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # walk back to the previous newline
        pos = size - 1
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                pos = pos - step + nl + 1
                break
            pos -= step
        f.truncate(pos)
        return size - pos


def append_jsonl(path: Path, obj: Any) -> None:
    """Append ``obj`` as one JSON line (flushed and fsynced; unpaired surrogates in text are
    written as JSON escapes, ``io.writers.json_bytes``)."""
    from medsam_agent_rt.io.writers import json_bytes

    line = json_bytes(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
    with open(path, "ab") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, object) of each line of a JSONL file; blank lines and a torn last line (an
    interrupted append) are skipped, any other malformed line is a ValueError naming file and
    line."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not line.endswith("\n") and n == len(lines):
            return
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The objects of a JSONL file (see ``iter_jsonl``)."""
    return [obj for _, obj in iter_jsonl(path)]


def write_json_atomic(path: Path, data: Any) -> None:
    from medsam_agent_rt.io.writers import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)


def comparable(meta: dict[str, Any]) -> dict[str, Any]:
    """What must agree between shards of one run (everything but rank, versions and hosts)."""
    return {
        "config": meta.get("config"),
        "world_size": meta.get("world_size"),
        "n_samples": meta.get("n_samples"),
        "dataset_digest": meta.get("dataset_digest"),
    }


def open_shard(out: Path, meta: dict[str, Any], overwrite: bool = False) -> tuple[Path, set[int]]:
    """Create or resume the shard of ``meta`` (rank, world_size) under ``out``; returns the row
    file and the sample indices it already holds. A shard of a different run raises ValueError
    (nothing is changed) unless ``overwrite``. ``discard_if_empty(rows_path)`` undoes a fresh
    shard that never got a row (a run that failed at start leaves nothing behind)."""
    stem = shard_stem(meta["rank"], meta["world_size"])
    folder = out / SHARD_DIR
    rows_path, meta_path = folder / f"{stem}.jsonl", folder / f"{stem}.json"
    if meta_path.is_file() and not overwrite:
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if comparable(old) != comparable(meta):
            diff = sorted(
                k
                for k in set(old.get("config", {})) | set(meta["config"])
                if old.get("config", {}).get(k) != meta["config"].get(k)
            )
            raise ValueError(
                f"{out} holds shard {stem} of a different run (differs in: "
                f"{', '.join(diff) or 'sample list'}); use another --out or --overwrite"
            )
    elif overwrite:
        for p in (rows_path, meta_path):
            if p.exists():
                p.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta_path, meta)
    repair_tail(rows_path)
    rows = read_jsonl(rows_path) if rows_path.is_file() else []
    done = {int(r["index"]) for r in rows if r.get("skipped") != FAILED}  # failed: run again
    return rows_path, done


def discard_if_empty(rows_path: Path) -> None:
    """Remove a shard (meta + rows) that holds no row, and the shard folder when empty."""
    if rows_path.is_file() and rows_path.stat().st_size > 0:
        return
    for p in (rows_path, rows_path.with_suffix(".json")):
        if p.exists():
            p.unlink()
    try:
        rows_path.parent.rmdir()  # only when empty
    except OSError:
        pass


def load_shards(dirs: Iterable[str | os.PathLike]) -> tuple[list[dict[str, Any]], list[dict]]:
    """(metas, rows sorted by index) of every shard under ``DIR/shards/`` for each DIR.

    Raises ValueError when there is no shard, shards belong to different runs, a row sits in
    the wrong shard, or samples are missing."""
    metas, rows, seen = [], {}, {}
    for d in dirs:
        folder = Path(d) / SHARD_DIR
        metas_here = sorted(folder.glob("rank*-of-*.json")) if folder.is_dir() else []
        if not metas_here:
            raise ValueError(f"{d}: no shards found (expected {folder}/rank*-of-*.json)")
        for mp in metas_here:
            meta = json.loads(mp.read_text(encoding="utf-8"))
            key = (meta["rank"], meta["world_size"])
            if metas and comparable(metas[0]) != comparable(meta):
                raise ValueError(
                    f"{mp} belongs to a different run than {metas[0]['_path']} (config, world "
                    "size or sample list differ)"
                )
            if key in seen:
                continue  # the same shard reached through two paths (or copied): rows agree
            seen[key] = meta
            metas.append({**meta, "_path": str(mp)})
            rp = mp.with_suffix(".jsonl")
            for r in read_jsonl(rp) if rp.is_file() else []:
                i = int(r["index"])
                if i % meta["world_size"] != meta["rank"]:
                    raise ValueError(f"{rp}: sample {i} does not belong to {shard_stem(*key)}")
                if i not in rows or rows[i].get("skipped") == FAILED:  # a retry replaces it
                    rows[i] = r
    n = metas[0]["n_samples"]
    missing = [i for i in range(n) if i not in rows]
    if missing:
        have = sorted({m["rank"] for m in metas})
        raise ValueError(
            f"{len(missing)} of {n} samples have no result (first: index {missing[0]}); ranks "
            f"found: {have} of world size {metas[0]['world_size']} — finish or resume the "
            "missing shards first"
        )
    return metas, [rows[i] for i in range(n)]
