"""LlamaRuntime: one llama.cpp text model + mmproj + context on one KV sequence, driven through
llama-cpp-python's low-level (``llama_cpp``) and multimodal (``llama_cpp.mtmd_cpp``) bindings.

Positions are tracked by the caller: ``eval_tokens(ids, pos)`` and ``eval_image(chunk, pos)``
return the next position. Under M-RoPE an image advances the position by mtmd's own count
(max(h, w) of its merged patch grid), not by its token count. ``remove_from(pos)`` drops the
KV cells at positions >= pos (the cache keeps everything before). Counters
(``tokens_evaluated``, ``images_encoded``) make the cache's work observable.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_LOG: dict[str, Any] = {"verbose": False, "callback": None}
_GGML_LOG_ERROR = 4  # enum ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


def _quiet_logs(llama: Any, mtmd: Any, verbose: bool) -> None:
    """Route llama.cpp's and mtmd's logs through one callback: everything when ``verbose``,
    else errors only (llama-cpp-python's own filter maps this ggml's levels one off)."""
    import sys

    _LOG["verbose"] = bool(verbose)
    if _LOG["callback"] is None:

        @llama.llama_log_callback
        def callback(level: int, text: bytes, user_data: Any) -> None:
            if _LOG["verbose"] or level == _GGML_LOG_ERROR:
                sys.stderr.write(text.decode("utf-8", errors="replace"))

        _LOG["callback"] = callback  # kept alive: C holds the pointer
        llama.llama_log_set(callback, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(callback, ctypes.c_void_p(0))


def import_llama() -> tuple[Any, Any]:
    """(llama_cpp, llama_cpp.mtmd_cpp), or an ImportError naming the extra."""
    try:
        import llama_cpp
        from llama_cpp import mtmd_cpp
    except ImportError as e:
        raise ImportError(
            "GGUF policies need llama-cpp-python: pip install 'medsam-agent-rt[gguf]' "
            f"(or [edge]) ({e})"
        ) from e
    return llama_cpp, mtmd_cpp


@dataclass
class ImageChunk:
    """An image tokenized by mtmd: ``n_tokens`` embeddings spanning ``n_pos`` positions."""

    ptr: Any
    n_tokens: int
    n_pos: int
    key: bytes  # content hash of the pixels fed to mtmd (for cache matching)


class LlamaRuntime:
    """llama.cpp model + context + mtmd context (see the module docstring).

    Args:
        model_path, mmproj_path: the text GGUF and the mmproj GGUF.
        n_ctx: context size in tokens (KV cells).
        n_threads: CPU threads (0: llama.cpp's default).
        n_gpu_layers: text layers offloaded to the GPU (-1 all, 0 none; needs a GPU build).
        mmproj_gpu: run the vision tower on the GPU (GPU builds only).
        n_batch: tokens per llama_decode call.
        flash_attn: llama.cpp's flash attention; None = off when nothing is offloaded to a GPU
            (on CPU it made later turns slower: turn-5 / turn-1 latency 1.34 with it, 0.63
            without, README "GGUF"), llama.cpp's own choice otherwise.
        vocab_only: load the vocabulary only (tokenize / detokenize; no context, no mmproj).
    """

    def __init__(
        self,
        model_path: str | Path,
        mmproj_path: str | Path | None,
        *,
        n_ctx: int = 0,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        mmproj_gpu: bool = True,
        n_batch: int = 512,
        flash_attn: bool | None = None,
        verbose: bool = False,
        vocab_only: bool = False,
    ) -> None:
        llama, mtmd = import_llama()
        _quiet_logs(llama, mtmd, verbose)
        self._llama, self._mtmd = llama, mtmd
        self.model = self.ctx = self.mctx = None
        llama.llama_backend_init()
        mp = llama.llama_model_default_params()
        mp.n_gpu_layers = int(n_gpu_layers)
        mp.vocab_only = bool(vocab_only)
        self._batch = None
        self.model = llama.llama_model_load_from_file(str(model_path).encode(), mp)
        if not self.model:
            raise ValueError(f"llama.cpp could not load the text GGUF {model_path}")
        self.vocab = llama.llama_model_get_vocab(self.model)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self.vocab))
        self.tokens_evaluated = 0
        self.images_encoded = 0
        if vocab_only:  # tokenizer only: no context, no mmproj
            return
        cp = llama.llama_context_default_params()
        cp.n_ctx = int(n_ctx)
        cp.n_batch = cp.n_ubatch = int(n_batch)
        if n_threads:
            cp.n_threads = cp.n_threads_batch = int(n_threads)
        cp.no_perf = True
        if flash_attn is None:
            flash_attn = None if n_gpu_layers else False
        cp.flash_attn_type = (
            llama.LLAMA_FLASH_ATTN_TYPE_AUTO
            if flash_attn is None
            else llama.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if flash_attn
            else llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        self.ctx = llama.llama_init_from_model(self.model, cp)
        if not self.ctx:
            self.close()
            raise ValueError(f"llama.cpp could not create a context of {n_ctx} tokens")
        self.n_ctx = int(llama.llama_n_ctx(self.ctx))
        self.n_batch = int(n_batch)
        mparams = mtmd.mtmd_context_params_default()
        mparams.use_gpu = bool(mmproj_gpu)
        mparams.print_timings = False
        mparams.warmup = False
        if n_threads:
            mparams.n_threads = int(n_threads)
        self.marker = mtmd.mtmd_default_marker()
        self.mctx = mtmd.mtmd_init_from_file(str(mmproj_path).encode(), self.model, mparams)
        if not self.mctx:
            self.close()
            raise ValueError(f"llama.cpp (mtmd) could not load the mmproj GGUF {mmproj_path}")
        self._batch = llama.llama_batch_init(self.n_batch, 0, 1)

    # ------------------------------------------------------------------------- vocabulary

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text`` (no BOS; control tokens parsed only when ``special``)."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (self._llama.llama_token * cap)()
        n = self._llama.llama_tokenize(self.vocab, data, len(data), buf, cap, False, special)
        if n < 0:
            raise RuntimeError(f"llama_tokenize failed ({n}) on {text[:40]!r}")
        return list(buf[:n])

    def token_id(self, piece: str) -> int:
        """The id of a single (control) token such as ``<|im_end|>``."""
        ids = self.tokenize(piece, special=True)
        if len(ids) != 1:
            raise ValueError(f"the GGUF vocabulary has no single token {piece!r} (got {ids})")
        return ids[0]

    def detokenize(self, ids: list[int]) -> str:
        """Text of ``ids`` with control tokens dropped (user-defined ones such as
        ``<tool_call>`` kept), like ``tokenizer.decode(ids, skip_special_tokens=True)``."""
        out = bytearray()
        buf = ctypes.create_string_buffer(256)
        for t in ids:
            n = self._llama.llama_token_to_piece(self.vocab, int(t), buf, 256, 0, False)
            out += buf.raw[: max(n, 0)]
        return out.decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self._llama.llama_vocab_is_eog(self.vocab, int(token)))

    # ------------------------------------------------------------------------- evaluation

    def eval_tokens(self, ids: list[int], pos: int, *, logits_last: bool = True) -> int:
        """Decode ``ids`` at positions pos, pos+1, ...; returns the next position."""
        llama, b = self._llama, self._batch
        for start in range(0, len(ids), self.n_batch):
            part = ids[start : start + self.n_batch]
            b.n_tokens = len(part)
            for i, t in enumerate(part):
                b.token[i] = int(t)
                b.pos[i] = pos + start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 0
            last = start + len(part) >= len(ids)
            b.logits[len(part) - 1] = int(logits_last and last)
            rc = llama.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(
                    f"llama_decode failed ({rc}) at position {pos + start} with {len(part)} tokens "
                    f"(context {self.n_ctx})"
                )
        self.tokens_evaluated += len(ids)
        return pos + len(ids)

    def image_chunk(self, rgb: np.ndarray) -> ImageChunk:
        """mtmd's image chunk for an (H, W, 3) uint8 image (resized by mtmd only when its size
        is not already a multiple of patch x merge within the pixel bounds)."""
        import hashlib

        mtmd = self._mtmd
        img = np.ascontiguousarray(rgb, dtype=np.uint8)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image must be (H, W, 3) uint8, got {img.shape}")
        h, w = img.shape[:2]
        data = img.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
        bitmap = mtmd.mtmd_bitmap_init(w, h, data)
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            text = mtmd.mtmd_input_text()
            text.text, text.text_len = self.marker, len(self.marker)
            text.add_special, text.parse_special = False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            rc = mtmd.mtmd_tokenize(self.mctx, chunks, ctypes.byref(text), bitmaps, 1)
            if rc != 0:
                raise RuntimeError(f"mtmd_tokenize failed ({rc}) on a {w}x{h} image")
            found = None
            for i in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    found = mtmd.mtmd_input_chunk_copy(chunk)
            if found is None:
                raise RuntimeError("mtmd produced no image chunk (is the mmproj a vision one?)")
            return ImageChunk(
                found,
                int(mtmd.mtmd_input_chunk_get_n_tokens(found)),
                int(mtmd.mtmd_input_chunk_get_n_pos(found)),
                hashlib.sha256(img.tobytes() + bytes(f"{h}x{w}", "ascii")).digest(),
            )
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)

    def eval_image(self, chunk: ImageChunk, pos: int) -> int:
        """Encode the image (vision tower) and decode its embeddings from ``pos``; returns the
        next position (mtmd's count: pos + chunk.n_pos)."""
        new_pos = self._llama.llama_pos(0)
        rc = self._mtmd.mtmd_helper_eval_chunk_single(
            self.mctx, self.ctx, chunk.ptr, pos, 0, self.n_batch, True, ctypes.byref(new_pos)
        )
        if rc != 0:
            raise RuntimeError(f"mtmd could not evaluate an image at position {pos} ({rc})")
        self.images_encoded += 1
        self.tokens_evaluated += chunk.n_tokens
        return int(new_pos.value)

    def image_embedding(self, rgb: np.ndarray) -> np.ndarray:
        """(n_tokens, D) float32: the mmproj's output for one image (vision tower + merger;
        Qwen3-VL: the deepstack features concatenated on D), without touching the KV cache."""
        chunk = self.image_chunk(rgb)
        try:
            rc = self._mtmd.mtmd_encode_chunk(self.mctx, chunk.ptr)
            if rc != 0:
                raise RuntimeError(f"mtmd_encode_chunk failed ({rc})")
            ptr = self._mtmd.mtmd_get_output_embd(self.mctx)
            dim = int(self._llama.llama_model_n_embd_inp(self.model))
            return (
                np.ctypeslib.as_array(ptr, shape=(chunk.n_tokens * dim,))
                .reshape(chunk.n_tokens, dim)
                .copy()
            )
        finally:
            self.free_chunk(chunk)

    def free_chunk(self, chunk: ImageChunk) -> None:
        if chunk.ptr is not None:
            self._mtmd.mtmd_input_chunk_free(chunk.ptr)
            chunk.ptr = None

    def remove_from(self, pos: int) -> None:
        """Forget the KV cells at positions >= ``pos`` (all of them for pos 0)."""
        mem = self._llama.llama_get_memory(self.ctx)
        if pos <= 0:
            self._llama.llama_memory_clear(mem, True)
        elif not self._llama.llama_memory_seq_rm(mem, 0, int(pos), -1):
            self._llama.llama_memory_clear(mem, True)
            raise RuntimeError(f"llama.cpp could not trim the KV cache at position {pos}")

    def logits(self) -> np.ndarray:
        """(n_vocab,) float32 logits of the last evaluated output (a copy)."""
        ptr = self._llama.llama_get_logits_ith(self.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    # ------------------------------------------------------------------------- sampling

    def sampler(self, grammar: str | None, temperature: float, seed: int) -> Any:
        """A sampler chain: [grammar] + greedy, or [grammar] + temperature + seeded draw."""
        llama = self._llama
        chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
        if grammar:
            g = llama.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not g:
                llama.llama_sampler_free(chain)
                raise ValueError("llama.cpp rejected the GBNF grammar")
            llama.llama_sampler_chain_add(chain, g)
        if temperature > 0:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_temp(float(temperature)))
            llama.llama_sampler_chain_add(
                chain, llama.llama_sampler_init_dist(int(seed) & 0xFFFFFFFF)
            )
        else:
            llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
        return chain

    def sample(self, sampler: Any) -> int:
        """Draw (and accept) one token from the last output's logits."""
        return int(self._llama.llama_sampler_sample(sampler, self.ctx, -1))

    def free_sampler(self, sampler: Any) -> None:
        self._llama.llama_sampler_free(sampler)

    # ------------------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Free the mtmd context, the llama context and the model (idempotent)."""
        llama, mtmd = self._llama, self._mtmd
        if getattr(self, "_batch", None) is not None:
            llama.llama_batch_free(self._batch)
            self._batch = None
        if self.mctx:
            mtmd.mtmd_free(self.mctx)
            self.mctx = None
        if self.ctx:
            llama.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama.llama_model_free(self.model)
            self.model = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
