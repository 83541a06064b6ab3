"""NT-Xent (InfoNCE over two views), written with log-sum-exp so it is safe under bf16/fp16,
and the all-gather that lets every DDP rank use the other ranks' crops as negatives."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.1,
    *,
    bank1: Tensor | None = None,
    bank2: Tensor | None = None,
    offset: int = 0,
) -> Tensor:
    """NT-Xent loss of two views of the same crops.

    z1, z2: (B, F) projections of view 1 and view 2 of B crops (row i of z1 pairs with row i of z2).
    bank1, bank2: (N, F) the projections of every crop across DDP ranks (defaults: z1, z2);
        rows ``offset .. offset+B`` of the banks must be z1 and z2 themselves.
    Returns the mean over the 2B anchors of ``-log softmax`` of the positive among the 2N - 1
    other projections. Computed in float32 whatever the input dtype.
    Raises ValueError on mismatched shapes or a non-positive temperature.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent: z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} must be equal (B, F) shapes")
    if temperature <= 0:
        raise ValueError(f"nt_xent: temperature must be > 0, got {temperature}")
    bank1 = z1 if bank1 is None else bank1
    bank2 = z2 if bank2 is None else bank2
    b, n = z1.shape[0], bank1.shape[0]
    queries = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, F]
    keys = F.normalize(torch.cat([bank1, bank2]).float(), dim=1)  # [2N, F]
    logits = queries @ keys.T / temperature  # [2B, 2N]
    local = torch.arange(b, device=z1.device) + offset
    self_idx = torch.cat([local, local + n])
    positive = torch.cat([local + n, local])
    logits = logits.masked_fill(F.one_hot(self_idx, 2 * n).bool(), float("-inf"))
    return F.cross_entropy(logits, positive)


def gather_with_grad(z: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``z`` (B, F) from every DDP rank; gradient flows to the local rows only.

    Returns (bank (world*B, F), offset of the local rows). Without an initialised process
    group this is (z, 0). Every rank must pass the same B."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.detach().contiguous())
    rank = dist.get_rank()
    parts[rank] = z
    return torch.cat(parts), rank * z.shape[0]
