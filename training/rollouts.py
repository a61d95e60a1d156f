"""RL rollouts through the real Episode and segmenter, and the token sequences GRPO trains on.

``LivePolicy`` is the runtime's HFPolicy over a model held in memory (the one being trained):
same chat encoder, same generation code, greedy or sampled. With ``splice=True`` (rollouts) the
earlier assistant turns of the conversation are the exact ids it sampled rather than its decoded
text tokenized again, so what the model conditioned on while sampling is what GRPO trains on.

``collect_rollouts`` runs G episodes per sample with ``Episode`` (nothing of the episode loop is
re-implemented: parsing, the first-stop refusal, the invalid-output retry, tool errors and the
turn budget are the runtime's). ``rollout_sequences`` turns one episode record into training
sequences: the accepted chain (every executed action, then the call that ended the episode) as
one sequence, and one more per call that was not kept in the conversation (an invalid answer
that was retried, a refused first stop), each with the context that call really saw. Every
token carries ``policy`` (1: sampled by the policy, 0: system prompt, user turns, images, and an
``<|im_end|>`` closing a cut-off answer) and the index of the policy call it belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medsam_agent_rt.policies.hf import HFPolicy, observation_messages
from medsam_agent_rt.policies.qwen_chat import IM_END, ChatInputs
from medsam_agent_rt.protocol.messages import assistant_message

__all__ = ["LivePolicy", "PolicySequence", "Rollout", "collect_rollouts", "rollout_sequences"]


# ----------------------------------------------------------------------------- policy


class LivePolicy(HFPolicy):
    """HFPolicy over an in-memory model (training). Built from parts instead of a directory.

    model: a Qwen-VL model (peft-wrapped or not, not DDP-wrapped); encoder: its QwenChatEncoder;
    temperature 0 = greedy (evaluation), 1.0 = rollouts; splice: condition on the sampled ids of
    earlier turns (see the module docstring); False renders texts exactly like HFPolicy.
    """

    name = "live"
    requires_gt = False

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        encoder: Any,
        *,
        device: str = "cpu",
        dtype: Any = None,
        temperature: float = 0.0,
        max_new_tokens: int = 128,
        seed: int = 0,
        splice: bool = False,
    ) -> None:
        import torch

        # The attributes HFPolicy.generate / act use (no directory to load from).
        self.model, self.tokenizer, self.encoder = model, tokenizer, encoder
        self.family = encoder.family
        self.device = torch.device(device)
        self.dtype = dtype if dtype is not None else next(model.parameters()).dtype
        stop = [encoder.token_ids[IM_END]]
        eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        if eot is not None and eot != getattr(tokenizer, "unk_token_id", None):
            stop.append(int(eot))
        self.stop_token_ids = stop
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else stop[-1]
        self.path = "<in memory>"
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.retry_temperature = None
        self.seed = int(seed)
        self._calls = 0
        self.last_inputs = None
        self.splice = bool(splice)
        self._accepted: list[list[int]] = []
        self._pending: tuple[str, list[int]] | None = None
        self.retokenize_mismatches = 0

    def reset(self, task: Any = None) -> None:
        self.last_inputs = None
        self._accepted, self._pending = [], None

    def act(self, observation: Any) -> Any:
        if not self.splice:
            return super().act(observation)
        messages = observation_messages(observation)
        texts = [m["content"][0]["text"] for m in messages if m.get("role") == "assistant"]
        previous = getattr(observation, "previous", None)
        if previous == "executed":  # the last answer is now the last assistant turn: keep its ids
            if self._pending is None or texts[-1:] != [self._pending[0]]:
                raise RuntimeError("the episode's last assistant text is not the policy's answer")
            self._accepted.append(self._pending[1])
        self._pending = None  # any other outcome dropped the answer from the conversation
        if len(texts) != len(self._accepted):
            raise RuntimeError(
                f"conversation has {len(texts)} assistant turns, the policy tracked "
                f"{len(self._accepted)}: one LivePolicy per episode, reset() per episode"
            )
        inputs = self.encoder.encode(
            messages, add_generation_prompt=True, assistant_ids=self._accepted
        )
        self.last_inputs = inputs
        ids, logprobs = self.generate(inputs, temperature=self.temperature)
        stopped = bool(ids) and ids[-1] in self.stop_token_ids
        text = self.tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=True)
        retok = self.encoder._encode_text(text) + ([ids[-1]] if stopped else [])
        same = retok == ids
        self.retokenize_mismatches += not same
        self._pending = (text, ids)
        from medsam_agent_rt.policies.base import PolicyTurn

        info = {
            "backend": "live",
            "token_ids": ids,
            "logprobs": logprobs,
            "finish_reason": "stop" if stopped else "length",
            "prompt_tokens": int(inputs.input_ids.size),
            "temperature": self.temperature,
            "retokenizes_same": same,
        }
        return PolicyTurn(text=text, info=info)


# ----------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """One episode of a group: its record (rewards), image (sequences), group index and sample."""

    record: Any
    image: np.ndarray
    group: int
    sample_id: str


def collect_rollouts(
    policy: LivePolicy,
    segmenter: Any,
    samples: Sequence[Any],
    group_size: int,
    session_config: Any = None,
    *,
    progress: Any = None,
) -> list[Rollout]:
    """``group_size`` episodes per sample (data.Sample: image, mask, description) through the
    real Episode; the segmenter's encoding store encodes each image once per group."""
    from medsam_agent_rt.episode import Episode

    episode = Episode(segmenter, policy, session_config)
    out = []
    for gi, sample in enumerate(samples):
        image, gt = sample.load()
        for _ in range(group_size):
            _, rec = episode.run(image, sample.description, gt, sample.sample_id)
            out.append(Rollout(rec, image, gi, sample.sample_id))
            if progress is not None:
                progress.update(1)
    return out


# ----------------------------------------------------------------------------- sequences


@dataclass
class PolicySequence:
    """One training sequence of a rollout.

    inputs: ChatInputs (input_ids (L,) ...); policy: (L,) int8, 1 on tokens the policy sampled;
    call: (L,) int32, index of the policy call (TurnRecord.index) of each sampled token, -1 on
    environment tokens; sampled_logprobs: (L,) float32, the log-prob each sampled token had when
    it was drawn (NaN elsewhere); rollout: index of its rollout in the batch."""

    inputs: ChatInputs
    policy: np.ndarray
    call: np.ndarray
    sampled_logprobs: np.ndarray
    rollout: int = 0
    advantages: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_policy_tokens(self) -> int:
        return int(self.policy.sum())


def _ids(turn: Any) -> list[int]:
    ids = (turn.info or {}).get("token_ids")
    if not ids:
        raise ValueError(
            f"turn {turn.index} has no sampled token_ids in its info: rollouts need a "
            "model-backed policy (LivePolicy / HFPolicy)"
        )
    return [int(t) for t in ids]


def rollout_sequences(
    record: Any, image: np.ndarray, encoder: Any, *, rollout: int = 0
) -> list[PolicySequence]:
    """The training sequences of one episode (see the module docstring)."""
    turns = record.turns
    if not turns:
        return []
    last = turns[-1]
    chain = [t for t in turns if t.outcome == "executed"]
    if last.outcome != "executed":
        chain.append(last)
    chain_ids = {t.index for t in chain}
    groups = [
        [t for t in chain if t.index < u.index] + [u] for u in turns if u.index not in chain_ids
    ]
    groups.append(chain)
    out = []
    for calls in groups:
        final = calls[-1]
        messages = record.messages(image, final.index) + [assistant_message(final.text)]
        ids = [_ids(t) for t in calls]
        inputs = encoder.encode(messages, assistant_ids=ids)
        policy = inputs.assistant_mask.astype(np.int8)
        call = np.full(policy.shape, -1, np.int32)
        lps = np.full(policy.shape, np.nan, np.float32)
        starts = np.flatnonzero(np.diff(np.concatenate([[0], policy])) == 1)
        if len(starts) != len(calls):
            raise AssertionError(f"{len(starts)} policy spans for {len(calls)} calls")
        for s, t, tid in zip(starts, calls, ids):
            n = len(tid)
            if inputs.input_ids[s : s + n].tolist() != tid:
                raise AssertionError(f"turn {t.index}: the sequence does not hold its sampled ids")
            call[s : s + n] = t.index
            lp = (t.info or {}).get("logprobs") or [np.nan] * n
            lps[s : s + n] = np.asarray(lp[:n], np.float32)
        out.append(PolicySequence(inputs, policy, call, lps, rollout))
    return out
