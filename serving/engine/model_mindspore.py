"""Tiny LLaMA in MindSpore (CPU): the numpy model's arithmetic with MindSpore ops.

Same weights (``init_weights``), same paged KV layout (flat slots per layer, block 0
the null block), same padded-row semantics, so greedy tokens match NumpyLlama.

Index work (block tables -> slots, lengths) stays in numpy on the host; one compiled
function does the layers. Prefill and decode share it: both write their new K/V
into the cache, then attend over the cache gathered through the slot table
(prefill reads back what it just wrote, so the result is the same).

Graph mode: the step runs under ``mindspore.jit`` with static shapes. Measured on a
2-core CPU, tiny_llama_pa.yaml dims, context 33-80, ms per decode step at batch 1 / 32:
PyNative ~175 / ~190; ``jit(dynamic=1)`` 6.7 / 43; static ``jit`` 2.5 / 10 (numpy 0.5 / 12).
Static shapes need buckets: the batch axis is already the scheduler's bucket, and
the key axis (and a dynamic prompt length) is padded up to a power of two, masked
keys adding exact zeros. Each new (rows, T, C) shape compiles once, ~1 s.
"""
from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from serving.engine.model import ModelDims, block_slots, init_weights, rope_tables

ms.set_device("CPU")
_NULL_SLOT = 0  # first slot of the null block: padded writes land here, reads of it are masked


def _bucket(n: int, floor: int) -> int:
    """Smallest ``floor * 2**k`` >= n: few distinct shapes to compile."""
    b = max(floor, 1)
    while b < n:
        b *= 2
    return b


class _Layers(nn.Cell):
    """Embedding -> layers -> logits for selected rows; KV caches are Parameters updated in place."""

    def __init__(self, dims: ModelDims, num_slots: int, max_position: int):
        super().__init__()
        self.dims = dims
        w = init_weights(dims)
        self.w = {k: Parameter(Tensor(v), name=k.replace(".", "_"), requires_grad=False) for k, v in w.items()}
        for k, p in self.w.items():  # register as the Cell's parameters; the dict alone is a plain attribute
            setattr(self, "w_" + k.replace(".", "_"), p)
        cos, sin = rope_tables(dims, max_position)
        self.cos, self.sin = Tensor(cos), Tensor(sin)
        shape = (num_slots, dims.num_kv_heads, dims.head_dim)
        self.k_cache = ms.ParameterTuple(
            [Parameter(Tensor(np.zeros(shape, np.float32)), name=f"k{i}", requires_grad=False)
             for i in range(dims.num_layers)])
        self.v_cache = ms.ParameterTuple(
            [Parameter(Tensor(np.zeros(shape, np.float32)), name=f"v{i}", requires_grad=False)
             for i in range(dims.num_layers)])
        self.scale = float(1.0 / np.sqrt(dims.head_dim))

    def _rms(self, x, weight):
        return x / ops.sqrt(ops.mean(x * x, -1, keep_dims=True) + self.dims.rms_eps) * weight

    def _mm(self, x, name):
        # 2-D matmul: CPU BatchMatMul does not broadcast a 2-D weight over batch dims
        lead = x.shape[:-1]
        return ops.matmul(x.reshape(-1, x.shape[-1]), self.w[name]).reshape(*lead, -1)

    def _rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return ops.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def construct(self, tokens, positions, write_slots, read_slots, lens, out_rows):
        # tokens/positions/write_slots (B, T); read_slots (B, C); lens (B,) visible keys; out_rows (B,) into B*T
        d = self.dims
        B, T = tokens.shape
        C = read_slots.shape[1]
        rep = d.num_heads // d.num_kv_heads
        cos = ops.gather(self.cos, positions, 0).expand_dims(2)
        sin = ops.gather(self.sin, positions, 0).expand_dims(2)
        wflat, rflat = write_slots.reshape(-1), read_slots.reshape(-1)
        kpos = ops.arange(C, dtype=ms.int32)
        mask = (kpos.reshape(1, 1, C) <= positions.expand_dims(2)) & (kpos.reshape(1, 1, C) < lens.reshape(B, 1, 1))
        bias = ops.select(mask, ops.zeros(mask.shape, ms.float32),
                          ops.full(mask.shape, -1e30, dtype=ms.float32)).expand_dims(1)
        x = ops.gather(self.w["embed"], tokens, 0)
        for i in range(d.num_layers):
            h = self._rms(x, self.w[f"{i}.attn_norm"])
            q = self._rope(self._mm(h, f"{i}.wq").reshape(B, T, d.num_heads, d.head_dim), cos, sin)
            k = self._rope(self._mm(h, f"{i}.wk").reshape(B, T, d.num_kv_heads, d.head_dim), cos, sin)
            v = self._mm(h, f"{i}.wv").reshape(B, T, d.num_kv_heads, d.head_dim)
            ops.scatter_update(self.k_cache[i], wflat, k.reshape(B * T, d.num_kv_heads, d.head_dim))
            ops.scatter_update(self.v_cache[i], wflat, v.reshape(B * T, d.num_kv_heads, d.head_dim))
            kc = ops.gather(self.k_cache[i], rflat, 0).reshape(B, C, d.num_kv_heads, d.head_dim)
            vc = ops.gather(self.v_cache[i], rflat, 0).reshape(B, C, d.num_kv_heads, d.head_dim)
            if rep > 1:  # GQA: query head h reads kv head h // rep, like np.repeat
                kc, vc = ops.repeat_interleave(kc, rep, 2), ops.repeat_interleave(vc, rep, 2)
            scores = ops.matmul(q.transpose(0, 2, 1, 3), kc.transpose(0, 2, 3, 1)) * self.scale + bias
            probs = ops.softmax(scores, -1)
            att = ops.matmul(probs, vc.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3).reshape(B, T, -1)
            x = x + self._mm(att, f"{i}.wo")
            h = self._rms(x, self.w[f"{i}.mlp_norm"])
            gate = self._mm(h, f"{i}.w_gate")
            x = x + self._mm(ops.sigmoid(gate) * gate * self._mm(h, f"{i}.w_up"), f"{i}.w_down")
        last = ops.gather(x.reshape(B * T, -1), out_rows, 0)
        return ops.matmul(self._rms(last, self.w["norm"]), self.w["lm_head"])


class MindSporeLlama:
    def __init__(self, dims: ModelDims, num_blocks: int, block_size: int, max_position: int = 8192,
                 jit: bool = True):
        self.dims = dims
        self.block_size = block_size
        self.max_position = max_position
        self.net = _Layers(dims, num_blocks * block_size, max_position)
        self._run = ms.jit(self.net.construct) if jit else self.net.construct

    def _forward(self, n, *arrays) -> np.ndarray:
        return self._run(*(Tensor(np.ascontiguousarray(a, np.int32)) for a in arrays)).asnumpy()[:n]

    def prefill(self, prompts: list[list[int]], block_tables: list[list[int]],
                rows: int | None = None, pad_len: int | None = None) -> np.ndarray:
        """Run whole prompts, fill their KV slots; logits of each prompt's last token, (n, vocab)."""
        n = len(prompts)
        rows = max(rows or n, n)
        lens = np.array([len(p) for p in prompts] + [1] * (rows - n))
        # a static pad_len is already a seq_length bucket; dynamic prompt lengths get a power of two
        T = max(pad_len, int(lens.max())) if pad_len else _bucket(int(lens.max()), self.block_size)
        tokens = np.zeros((rows, T), np.int64)
        for r, p in enumerate(prompts):
            tokens[r, :len(p)] = p
        positions = np.broadcast_to(np.arange(T), (rows, T))
        valid = positions < lens[:, None]
        slots = block_slots(list(block_tables) + [[]] * (rows - n), T, self.block_size)
        live = valid & (np.arange(rows) < n)[:, None]  # numpy writes only live rows' prompt tokens
        write = np.where(live, slots, _NULL_SLOT)
        out_rows = np.arange(rows) * T + lens - 1
        # padded positions only need a valid RoPE row; they are masked or discarded
        positions = np.minimum(positions, self.max_position - 1)
        return self._forward(n, tokens, positions, write, slots, lens, out_rows)

    def decode(self, tokens: list[int], positions: list[int], block_tables: list[list[int]],
               rows: int | None = None) -> np.ndarray:
        """One token per row at ``positions``; attends over the cached context. (n, vocab)."""
        n = len(tokens)
        rows = max(rows or n, n)
        tok = np.array(list(tokens) + [0] * (rows - n), np.int64)
        pos = np.array(list(positions) + [0] * (rows - n), np.int64)
        ctx = _bucket(int(pos.max()) + 1, self.block_size)
        slots = block_slots(list(block_tables) + [[]] * (rows - n), ctx, self.block_size)
        own = np.where(np.arange(rows) < n, slots[np.arange(rows), pos], _NULL_SLOT)
        return self._forward(n, tok[:, None], pos[:, None], own[:, None], slots, pos + 1, np.arange(rows))
