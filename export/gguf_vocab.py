"""A Qwen-VL tokenizer (``tokenizer.json``) -> the GGUF vocabulary fields, written with gguf-py.

llama.cpp's converter refuses tokenizers whose pre-tokenizer hash it does not know (our trained
test tokenizers); the fields are written here directly: model ``gpt2`` (byte-level BPE), pre
``qwen2`` (Qwen's split regex, every digit its own token), the token list padded with
``[PAD<i>]`` (type UNUSED) up to the embedding rows, token types (NORMAL for the learned
vocabulary, CONTROL for special added tokens, USER_DEFINED for the others such as
``<tool_call>``), merges, special ids (eos = ``<|im_end|>``, pad/bos = ``<|endoftext|>``, no BOS
added) and the chat template (the checkpoint's own, else a ChatML template that renders the
protocol's messages the way policies.qwen_chat does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The protocol conversation in ChatML, images as <|vision_start|><|image_pad|><|vision_end|>
# (what the official Qwen-VL templates emit for the protocol's messages; qwen_chat's docstring).
CHATML_VL_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' and default_system is defined %}"
    "<|im_start|>system\n{{ default_system }}<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

REQUIRED_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
)


def read_tokenizer(directory: str | Path, vocab_size: int) -> dict[str, Any]:
    """tokens, types, merges, special ids and chat template of ``directory``'s tokenizer.json.

    vocab_size: the model's embedding rows (>= the tokenizer's size); the list is padded to it.
    """
    import gguf

    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no tokenizer.json (a fast tokenizer is needed)")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model", {})
    if model.get("type") != "BPE":
        raise ValueError(f"{path}: expected a byte-level BPE tokenizer, got {model.get('type')!r}")
    ids: dict[int, tuple[str, int]] = {
        int(i): (tok, gguf.TokenType.NORMAL) for tok, i in model["vocab"].items()
    }
    for added in data.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        ids[int(added["id"])] = (added["content"], kind)
    n = max(ids) + 1
    if n > vocab_size:
        raise ValueError(
            f"tokenizer has {n} tokens but the model's embedding has only {vocab_size} rows"
        )
    tokens, types = [], []
    for i in range(vocab_size):
        tok, kind = ids.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(tok)
        types.append(kind)
    index = {t: i for i, t in enumerate(tokens)}
    missing = [t for t in REQUIRED_TOKENS if t not in index]
    if missing:
        raise ValueError(f"{path} lacks the Qwen-VL tokens {missing}: not a Qwen-VL tokenizer")
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {
        "tokens": tokens,
        "types": types,
        "merges": merges,
        "eos": index["<|im_end|>"],
        "pad": index["<|endoftext|>"],
        "bos": index["<|endoftext|>"],
        "chat_template": _chat_template(directory),
        "n_learned": len(model["vocab"]),
    }


def _chat_template(directory: Path) -> str:
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        f = directory / name
        if f.is_file():
            tpl = json.loads(f.read_text(encoding="utf-8")).get("chat_template")
            if isinstance(tpl, str) and tpl:
                return tpl
    return CHATML_VL_TEMPLATE


def write_vocab(writer: Any, vocab: dict[str, Any]) -> None:
    """Add the tokenizer fields of ``read_tokenizer`` to a GGUFWriter."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    writer.add_token_merges(vocab["merges"])
    writer.add_eos_token_id(vocab["eos"])
    writer.add_pad_token_id(vocab["pad"])
    writer.add_bos_token_id(vocab["bos"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(vocab["chat_template"])
