"""Helpers of the training tests: a square-target image, and a policy that samples among a few
candidate answers in proportion to the model's own probability of each answer (a real,
differentiable policy over a small action set, so RL can be tested in seconds)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_fakes import FakeFactory  # noqa: E402, F401

from medsam_agent_rt.protocol import PHRASE_BOX, PHRASE_STOP, assistant_text  # noqa: E402

GOOD_BOX = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [250, 250, 749, 749]})
BAD_BOX = assistant_text(PHRASE_BOX, "add_bbox", {"bbox_2d": [0, 0, 499, 499]})
STOP = assistant_text(PHRASE_STOP, "stop_action", {})
INVALID = "I am not sure."


def square_case(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a bright centre square and its GT mask (the GOOD_BOX region)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
    gt = np.zeros((size, size), bool)
    lo, hi = round(250 / 999 * (size - 1)), round(749 / 999 * (size - 1))
    gt[lo : hi + 1, lo : hi + 1] = True
    image[gt] += 150
    return image, gt


class SquareSample:
    """A data.Sample stand-in (load() -> image, mask) for the square case."""

    def __init__(self, i: int = 0, size: int = 64) -> None:
        self.image, self.mask = square_case(size)
        self.description = "bright square in phantom image"
        self.sample_id = f"square/{i}"

    def load(self):
        return self.image, self.mask


def candidate_ids(policy, text: str, *, bytewise: bool = False) -> list[int]:
    """Token ids of an answer + <|im_end|>; ``bytewise`` spells the phrase one byte-level symbol
    at a time (not what the tokenizer produces: re-tokenizing the text gives other ids)."""
    if not bytewise:
        return policy.encoder._encode_text(text) + [policy.stop_token_ids[0]]
    tok = policy.tokenizer
    vocab = tok.get_vocab()
    phrase, rest = text.split("\n", 1)
    ids = [vocab[c] for t in tok.tokenize(phrase) for c in t]
    return ids + policy.encoder._encode_text("\n" + rest) + [policy.stop_token_ids[0]]


def make_candidate_generate(first: list[tuple[str, bool]], later: list[tuple[str, bool]]):
    """A replacement for HFPolicy.generate: at the first call of an episode choose among
    ``first`` [(text, bytewise)], later among ``later``, with probability softmax(mean token
    log-prob of each answer under the model) (length-normalised, so short answers do not win by
    length); returns (ids, per-token log-probs under the model). Raising an answer's token
    log-probs raises its probability of being chosen."""
    import torch

    def generate(self, inputs, *, temperature=0.0):
        options = later if inputs.assistant_mask.any() else first
        prompt = torch.as_tensor(inputs.input_ids)
        scored = []
        for text, bytewise in options:
            ids = candidate_ids(self, text, bytewise=bytewise)
            full = torch.cat([prompt, torch.as_tensor(ids)])
            kw = inputs.model_kwargs(self.device, self.dtype)
            kw["input_ids"] = full[None]
            kw["attention_mask"] = torch.ones_like(full)[None]
            kw["mm_token_type_ids"] = torch.cat(
                [kw["mm_token_type_ids"][0], torch.zeros(len(ids), dtype=torch.long)]
            )[None]
            with torch.no_grad():
                logits = self.model(**kw).logits[0, len(prompt) - 1 : -1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, torch.as_tensor(ids)[:, None])[:, 0]
            scored.append((ids, lp.tolist()))
        totals = np.array([np.mean(lp) for _, lp in scored])
        p = np.exp(totals - totals.max())
        rng = np.random.default_rng(self.seed + self._calls)
        self._calls += 1
        k = int(rng.choice(len(scored), p=p / p.sum())) if temperature > 0 else int(p.argmax())
        return scored[k]

    return generate
