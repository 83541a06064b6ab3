"""Window attention on the CPU in cache-sized chunks, recomputed in the backward pass.

Swin's first stage at 64^3 has 125 windows of 343 tokens per sample: its attention
matrices, (windows, heads, 343, 343), are about 700 MB for four samples, written by one
matmul, read and rewritten by the bias and the softmax, read again by the second matmul,
and kept for the backward pass. On a CPU that traffic (and the page faults of allocating
it afresh every block) is most of a pretraining step. Here a few windows at a time go
through all four operations while their matrix is still in cache, and the backward pass
recomputes each chunk's softmax instead of keeping it: the flash-attention idea, with the
relative-position bias that has to receive its gradient (PyTorch's fused CPU kernels take no
gradient for a bias). The forward values are bitwise those of the unchunked maths.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

#: attention scores held at once (bytes): a few windows, small enough to stay in cache
CHUNK_BYTES = 6 * 2**20


def _chunks(b: int, nw: int, per_chunk: int) -> Iterator[tuple[int, int, int]]:
    """(start, stop, first window) over the batch of ``b`` windows, ``nw`` per sample, never
    crossing a sample, so each chunk's windows take one contiguous slice of the mask."""
    for s0 in range(0, b, nw):
        for w0 in range(0, nw, per_chunk):
            w1 = min(nw, w0 + per_chunk)
            yield s0 + w0, s0 + w1, w0


def _scores(q: Tensor, k: Tensor, rel: Tensor, mask: Tensor | None, w0: int) -> Tensor:
    """Softmax of ``q k^T + rel (+ mask)`` for one chunk: q, k [c, H, N, D] -> [c, H, N, N].
    ``q`` arrives scaled."""
    a = torch.matmul(q, k.transpose(-2, -1))
    a += rel
    if mask is not None:
        a += mask[w0 : w0 + a.shape[0]].unsqueeze(1)
    return torch.softmax(a, -1)


class _ChunkedWindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, rel: Tensor, mask: Tensor | None, scale: float) -> Tensor:  # noqa: ANN001
        b, h, n, _ = q.shape
        nw = b if mask is None else mask.shape[0]
        per_chunk = max(1, CHUNK_BYTES // (h * n * n * q.element_size()))
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        for b0, b1, w0 in _chunks(b, nw, per_chunk):
            p = _scores(q[b0:b1] * scale, k[b0:b1], rel, mask, w0)
            torch.matmul(p, v[b0:b1], out=out[b0:b1])
        ctx.save_for_backward(q, k, v, rel, mask)
        ctx.scale, ctx.nw, ctx.per_chunk = scale, nw, per_chunk
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: ANN001
        q, k, v, rel, mask = ctx.saved_tensors
        scale = ctx.scale
        dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
        drel = torch.zeros_like(rel)
        for b0, b1, w0 in _chunks(q.shape[0], ctx.nw, ctx.per_chunk):
            qs, ks, vs, gs = q[b0:b1] * scale, k[b0:b1], v[b0:b1], grad[b0:b1]
            p = _scores(qs, ks, rel, mask, w0)
            torch.matmul(p.transpose(-2, -1), gs, out=dv[b0:b1])
            ds = torch.ops.aten._softmax_backward_data(torch.matmul(gs, vs.transpose(-2, -1)), p, -1, p.dtype)
            drel += ds.sum(0)
            torch.matmul(ds, ks, out=dq[b0:b1]).mul_(scale)
            torch.matmul(ds.transpose(-2, -1), qs, out=dk[b0:b1])
        return dq, dk, dv, drel, None, None


def chunked_window_attention(q: Tensor, k: Tensor, v: Tensor, rel: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """``softmax(scale q k^T + rel + mask) v`` for Swin windows, chunked (see the module).

    q, k, v: [B, H, N, D], B = samples x windows, window-minor as ``window_partition`` orders
    them; rel: [H, N, N], the relative-position bias (may require grad); mask: [nW, N, N],
    the shifted-window mask (no grad), or None. Returns [B, H, N, D]. Differentiable once in
    q, k, v and rel."""
    if mask is not None:
        mask = mask.to(q.dtype).detach()
    return _ChunkedWindowAttention.apply(q, k, v, rel.to(q.dtype), mask, scale)
