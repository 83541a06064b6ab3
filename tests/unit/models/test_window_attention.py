"""The chunked CPU window attention against MONAI's own WindowAttention.forward."""

import pytest
import torch
from monai.networks.nets.swin_unetr import WindowAttention

from medssl.models import window_attention
from medssl.models.encoders import use_fused_attention


def _pair(dim: int, heads: int, window: int) -> tuple[WindowAttention, WindowAttention]:
    torch.manual_seed(0)
    plain = WindowAttention(dim, heads, (window,) * 3, qkv_bias=True)
    with torch.no_grad():  # MONAI starts the table near zero; a real one is not
        plain.relative_position_bias_table.normal_(0, 0.5)
    ours = WindowAttention(dim, heads, (window,) * 3, qkv_bias=True)
    ours.load_state_dict(plain.state_dict())
    return plain, use_fused_attention(ours)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("chunk_windows", [1, 3, 100])  # one window, chunks not dividing nW, all at once
def test_chunked_matches_monai_values_and_grads(monkeypatch, masked, chunk_windows):
    dim, heads, window, samples, nw = 12, 3, 3, 2, 5
    n = window**3
    monkeypatch.setattr(window_attention, "CHUNK_BYTES", chunk_windows * heads * n * n * 4)
    plain, ours = _pair(dim, heads, window)
    x = torch.randn(samples * nw, n, dim)
    mask = None
    if masked:  # shifted-window masks: 0 or -100, different per window, shared by the samples
        mask = torch.where(torch.rand(nw, n, n) < 0.3, -100.0, 0.0)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_plain, out_ours = plain(xa, mask), ours(xb, mask)
    assert torch.equal(out_plain, out_ours)  # same operations in the same order
    weight = torch.randn_like(out_plain)
    (out_plain * weight).sum().backward()
    (out_ours * weight).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)
    for (name, pa), pb in zip(plain.named_parameters(), ours.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_chunked_without_grad_and_under_autocast_and_dropout():
    plain, ours = _pair(12, 3, 3)
    x = torch.randn(4, 27, 12)
    with torch.no_grad():
        assert torch.equal(plain(x, None), ours(x, None))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain-maths branch
        torch.testing.assert_close(ours(x, None).float(), plain(x, None).float(), rtol=0.05, atol=0.05)
    ours.attn_drop.p = 0.5
    ours.train()
    torch.manual_seed(1)
    assert not torch.equal(ours(x, None), plain(x, None))  # dropout applies, so not the chunked path
    ours.eval()
    assert torch.equal(ours(x, None), plain.eval()(x, None))


def test_chunked_backward_is_once_differentiable():
    _, ours = _pair(12, 3, 3)
    x = torch.randn(2, 27, 12, requires_grad=True)
    (g,) = torch.autograd.grad(ours(x, None).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        g.sum().backward()
