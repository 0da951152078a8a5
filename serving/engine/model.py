"""Tiny LLaMA in numpy: RMSNorm, RoPE, attention over the paged KV cache, SwiGLU MLP.

Weights are random from a fixed seed (no checkpoint can be downloaded here), so
the tokens are meaningless but the arithmetic, the cache traffic and the cost
per batch row are those of a real decoder. Padded batch rows (up to the bucket)
are computed like live ones, because that is what a bucketed device pays for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.engine.block_manager import NULL_BLOCK


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 352
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def check(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size % num_heads == 0 must hold, got {self.hidden_size} % {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads % num_kv_heads == 0 must hold, got {self.num_heads} % {self.num_kv_heads}")


def init_weights(dims: ModelDims) -> dict[str, np.ndarray]:
    """Deterministic float32 weights; shared by every backend so they agree token for token."""
    dims.check()
    rng = np.random.default_rng(dims.seed)
    h, f, d = dims.hidden_size, dims.intermediate_size, dims.head_dim

    def mat(n_in: int, n_out: int) -> np.ndarray:
        return (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)

    w = {"embed": rng.standard_normal((dims.vocab_size, h)).astype(np.float32),
         "norm": np.ones(h, np.float32), "lm_head": mat(h, dims.vocab_size)}
    for i in range(dims.num_layers):
        w[f"{i}.attn_norm"] = np.ones(h, np.float32)
        w[f"{i}.wq"] = mat(h, dims.num_heads * d)
        w[f"{i}.wk"] = mat(h, dims.num_kv_heads * d)
        w[f"{i}.wv"] = mat(h, dims.num_kv_heads * d)
        w[f"{i}.wo"] = mat(dims.num_heads * d, h)
        w[f"{i}.mlp_norm"] = np.ones(h, np.float32)
        w[f"{i}.w_gate"] = mat(h, f)
        w[f"{i}.w_up"] = mat(h, f)
        w[f"{i}.w_down"] = mat(f, h)
    return w


def rope_tables(dims: ModelDims, max_pos: int) -> tuple[np.ndarray, np.ndarray]:
    inv = 1.0 / dims.rope_theta ** (np.arange(0, dims.head_dim, 2, dtype=np.float64) / dims.head_dim)
    ang = np.outer(np.arange(max_pos, dtype=np.float64), inv)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def block_slots(block_tables: list[list[int]], length: int, block_size: int) -> np.ndarray:
    """(rows, length) flat cache slots; positions past a row's table map into the null block."""
    nblk = -(-length // block_size)
    table = np.full((len(block_tables), max(nblk, 1)), NULL_BLOCK, dtype=np.int64)
    for r, bt in enumerate(block_tables):
        n = min(len(bt), nblk)
        table[r, :n] = bt[:n]
    pos = np.arange(length)
    return table[:, pos // block_size] * block_size + pos % block_size


class NumpyLlama:
    def __init__(self, dims: ModelDims, num_blocks: int, block_size: int, max_position: int = 8192):
        self.dims = dims
        self.block_size = block_size
        self.w = init_weights(dims)
        self.cos, self.sin = rope_tables(dims, max_position)
        shape = (num_blocks * block_size, dims.num_kv_heads, dims.head_dim)
        self.k_cache = [np.zeros(shape, np.float32) for _ in range(dims.num_layers)]
        self.v_cache = [np.zeros(shape, np.float32) for _ in range(dims.num_layers)]

    # -- building blocks -------------------------------------------------
    def _rms(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.dims.rms_eps) * weight

    def _rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        # x (..., heads, head_dim); positions broadcast to x's leading dims
        cos = self.cos[positions][..., None, :]
        sin = self.sin[positions][..., None, :]
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)

    def _mlp(self, i: int, x: np.ndarray) -> np.ndarray:
        h = self._rms(x, self.w[f"{i}.mlp_norm"])
        gate = h @ self.w[f"{i}.w_gate"]
        return (gate / (1.0 + np.exp(-gate)) * (h @ self.w[f"{i}.w_up"])) @ self.w[f"{i}.w_down"]

    def _qkv(self, i: int, x: np.ndarray, positions: np.ndarray):
        d = self.dims
        h = self._rms(x, self.w[f"{i}.attn_norm"])
        lead = x.shape[:-1]
        q = (h @ self.w[f"{i}.wq"]).reshape(*lead, d.num_heads, d.head_dim)
        k = (h @ self.w[f"{i}.wk"]).reshape(*lead, d.num_kv_heads, d.head_dim)
        v = (h @ self.w[f"{i}.wv"]).reshape(*lead, d.num_kv_heads, d.head_dim)
        return self._rope(q, positions), self._rope(k, positions), v

    def _attend(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # q (B, Tq, H, D); k, v (B, Tk, Hkv, D); mask (B, Tq, Tk) True = visible
        rep = self.dims.num_heads // self.dims.num_kv_heads
        if rep > 1:
            k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
        scores = np.where(mask[:, None], scores, np.float32(-1e30))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        return np.einsum("bhqk,bkhd->bqhd", probs, v)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return self._rms(x, self.w["norm"]) @ self.w["lm_head"]

    # -- steps -------------------------------------------------------------
    def prefill(self, prompts: list[list[int]], block_tables: list[list[int]],
                rows: int | None = None, pad_len: int | None = None) -> np.ndarray:
        """Run whole prompts, fill their KV slots; logits of each prompt's last token, (n, vocab)."""
        n = len(prompts)
        rows = max(rows or n, n)
        lens = np.array([len(p) for p in prompts] + [1] * (rows - n))
        T = max(pad_len or 0, int(lens.max()))
        tokens = np.zeros((rows, T), np.int64)
        for r, p in enumerate(prompts):
            tokens[r, :len(p)] = p
        positions = np.broadcast_to(np.arange(T), (rows, T))
        valid = positions < lens[:, None]
        mask = (positions[:, None, :] <= positions[:, :, None]) & valid[:, None, :]
        slots = block_slots(list(block_tables) + [[]] * (rows - n), T, self.block_size)
        write = slots[:n][valid[:n]]
        x = self.w["embed"][tokens]
        for i in range(self.dims.num_layers):
            q, k, v = self._qkv(i, x, positions)
            self.k_cache[i][write] = k[:n][valid[:n]]
            self.v_cache[i][write] = v[:n][valid[:n]]
            x = x + self._attend(q, k, v, mask).reshape(rows, T, -1) @ self.w[f"{i}.wo"]
            x = x + self._mlp(i, x)
        last = x[np.arange(n), lens[:n] - 1]
        return self._logits(last)

    def decode(self, tokens: list[int], positions: list[int], block_tables: list[list[int]],
               rows: int | None = None) -> np.ndarray:
        """One token per row at ``positions``; attends over the cached context. (n, vocab).

        Rows are grouped by context length (within 2x of each other) and each group is
        padded only to its own longest context, so attention cost follows the tokens
        actually cached, as PagedAttention's does, not rows x the longest context.
        Padded rows (up to ``rows``) have a one-token context in the null block.
        """
        d = self.dims
        n = len(tokens)
        rows = max(rows or n, n)
        tok = np.array(list(tokens) + [0] * (rows - n), np.int64)
        pos = np.array(list(positions) + [0] * (rows - n), np.int64)
        ctx = pos + 1
        slots = block_slots(list(block_tables) + [[]] * (rows - n), int(ctx.max()), self.block_size)
        own = slots[np.arange(rows), pos]
        tier = np.ceil(np.log2(ctx)).astype(np.int64)
        groups = [np.flatnonzero(tier == t) for t in np.unique(tier)]
        rep = d.num_heads // d.num_kv_heads
        x = self.w["embed"][tok]
        for i in range(d.num_layers):
            q, k, v = self._qkv(i, x, pos)
            self.k_cache[i][own] = k
            self.v_cache[i][own] = v
            out = np.empty((rows, d.num_kv_heads, rep, d.head_dim), np.float32)
            for idx in groups:
                length = int(ctx[idx].max())
                sl = slots[idx, :length]
                kc = self.k_cache[i][sl].transpose(0, 2, 3, 1)                  # (g, Hkv, D, L)
                vc = self.v_cache[i][sl].transpose(0, 2, 1, 3)                  # (g, Hkv, L, D)
                qg = q[idx].reshape(len(idx), d.num_kv_heads, rep, d.head_dim)
                sc = np.matmul(qg, kc) / np.float32(np.sqrt(d.head_dim))       # (g, Hkv, rep, L)
                sc = np.where((np.arange(length)[None, :] < ctx[idx][:, None])[:, None, None, :], sc,
                              np.float32(-1e30))
                sc = np.exp(sc - sc.max(axis=-1, keepdims=True))
                out[idx] = np.matmul(sc / sc.sum(axis=-1, keepdims=True), vc)
            x = x + out.reshape(rows, -1) @ self.w[f"{i}.wo"]
            x = x + self._mlp(i, x)
        return self._logits(x[:n])
