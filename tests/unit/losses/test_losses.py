import math

import pytest
import torch
import torch.nn.functional as F

from medssl.losses import masked_l1, masked_mse, nt_xent


def naive_nt_xent(z1, z2, t):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, b = z.shape[0], z.shape[0] // 2
    total = 0.0
    for i in range(n):
        pos = math.exp(float(z[i] @ z[(i + b) % n]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total += -math.log(pos / den)
    return total / n


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_naive(t):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert nt_xent(z1, z2, t).item() == pytest.approx(naive_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_bank_equals_single_process_when_bank_is_all():
    g = torch.Generator().manual_seed(1)
    a1, a2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    b1, b2 = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    full = nt_xent(torch.cat([a1, b1]), torch.cat([a2, b2]), 0.2)
    bank1, bank2 = torch.cat([a1, b1]), torch.cat([a2, b2])
    part_a = nt_xent(a1, a2, 0.2, bank1=bank1, bank2=bank2, offset=0)
    part_b = nt_xent(b1, b2, 0.2, bank1=bank1, bank2=bank2, offset=3)
    assert ((part_a + part_b) / 2).item() == pytest.approx(full.item(), rel=1e-6)


def test_nt_xent_perfect_pairs_low_and_bf16_large_logits_finite():
    z = torch.eye(4) * 1e4
    assert nt_xent(z, z, 0.05).item() < 1e-3
    big = (torch.randn(16, 32) * 1e4).to(torch.bfloat16).requires_grad_()
    loss = nt_xent(big, big.flip(0), 0.01)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad.float()).all()


def test_nt_xent_rejects_bad_input():
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        nt_xent(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)


def test_masked_losses_count_masked_voxels_only():
    target = torch.zeros(1, 1, 2, 2, 2)
    pred = torch.zeros(1, 1, 2, 2, 2)
    pred[0, 0, 0, 0, 0] = 3.0  # masked, error 3
    pred[0, 0, 1, 1, 1] = 100.0  # unmasked: must not count
    mask = torch.zeros(1, 1, 2, 2, 2, dtype=torch.bool)
    mask[0, 0, 0, 0, 0] = mask[0, 0, 0, 0, 1] = True
    assert masked_l1(pred, target, mask).item() == pytest.approx(1.5)
    assert masked_mse(pred, target, mask).item() == pytest.approx(4.5)
    assert masked_l1(pred, target, torch.zeros_like(mask)).item() == 0.0
