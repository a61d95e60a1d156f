"""The on-disk format of training conversations (SFT data, RL prompts): JSONL + PNG files.

One line per conversation::

    {"id": "phantom-ct/train/000012_liver#0",      # unique, stable
     "sample_id": "...", "target": "liver in abdomen CT", "modality": "CT", "dataset": "...",
     "split": "train",
     "messages": [                                  # protocol.messages structure, images by path
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image", "image": "images/<key>/0.png"},
                                     {"type": "text", "text": "The target to be segmented is: ..."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Locate ...\\n<tool_call>..."}]},
        ...],
     "meta": {...}}                                 # free-form: final_iou, num_actions, seed, ...

Image paths are relative to the JSONL file's directory; images are 512x512 RGB PNGs exactly as
the policy saw them. Writers append whole lines (a crash never leaves half a line that readers
accept); readers skip nothing silently: a malformed line is an error naming file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ConversationWriter", "iter_conversations", "load_images", "read_conversation_ids"]


def _image_key(conv_id: str) -> str:
    return hashlib.sha1(conv_id.encode("utf-8")).hexdigest()[:16]


class ConversationWriter:
    """Appends conversations to ``root/name`` (JSONL) and their images under ``root/images/``."""

    def __init__(self, root: str | os.PathLike, name: str = "conversations.jsonl") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / name

    def write(
        self,
        conv_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        meta: dict[str, Any] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Write the images of ``messages`` (ndarray image parts) as PNG, then append the line.
        Returns the JSON object written."""
        from PIL import Image

        key = _image_key(conv_id)
        img_dir = self.root / "images" / key
        img_dir.mkdir(parents=True, exist_ok=True)
        out_msgs, k = [], 0
        for msg in messages:
            parts = []
            for part in msg["content"]:
                if part["type"] == "image":
                    arr = np.asarray(part["image"])
                    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
                        raise ValueError(
                            f"{conv_id}: image parts must be (H, W, 3) uint8, got "
                            f"{arr.dtype} {arr.shape}"
                        )
                    rel = f"images/{key}/{k}.png"
                    tmp = self.root / (rel + ".tmp")
                    Image.fromarray(arr).save(tmp, format="PNG")
                    os.replace(tmp, self.root / rel)
                    parts.append({"type": "image", "image": rel})
                    k += 1
                else:
                    parts.append({"type": "text", "text": part["text"]})
            out_msgs.append({"role": msg["role"], "content": parts})
        obj = {"id": conv_id, **fields, "messages": out_msgs, "meta": meta or {}}
        line = json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        return obj


def iter_conversations(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a conversations JSONL file (images still as relative paths).
    A final line without its newline (an interrupted write) is ignored; any other malformed
    line raises ValueError naming the file and line number."""
    from medsam_agent_rt.evaluation.shards import iter_jsonl

    for n, obj in iter_jsonl(path):
        if "id" not in obj or "messages" not in obj:
            raise ValueError(f"{path}:{n}: a conversation needs 'id' and 'messages'")
        yield obj


def read_conversation_ids(path: str | os.PathLike) -> set[str]:
    """Ids already written (for resuming); empty when the file does not exist."""
    return {c["id"] for c in iter_conversations(path)} if Path(path).exists() else set()


def load_images(conv: dict[str, Any], root: str | os.PathLike) -> list[dict[str, Any]]:
    """The conversation's messages with image paths replaced by (H, W, 3) uint8 arrays."""
    from PIL import Image

    root = Path(root)
    out = []
    for msg in conv["messages"]:
        parts = []
        for part in msg["content"]:
            if part["type"] == "image":
                p = root / part["image"]
                if not p.is_file():
                    raise FileNotFoundError(f"conversation {conv['id']}: image {p} is missing")
                with Image.open(p) as im:
                    parts.append({"type": "image", "image": np.asarray(im.convert("RGB"))})
            else:
                parts.append(part)
        out.append({"role": msg["role"], "content": parts})
    return out
