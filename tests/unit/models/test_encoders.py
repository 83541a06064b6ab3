import pytest
import torch

from medssl.errors import ConfigError
from medssl.models import ENCODERS
from medssl.models.encoders import build_encoder


def test_registry_and_typo():
    assert {"swin", "cnn"} <= set(ENCODERS.names())
    with pytest.raises(ConfigError, match="did you mean 'swin'"):
        build_encoder({"name": "swin_untr"})
    with pytest.raises(ConfigError, match="encoder 'cnn'"):
        build_encoder({"name": "cnn", "widths": [1]})


def test_cnn_multiscale_shapes():
    enc = build_encoder({"name": "cnn", "channels": [4, 8, 16]})
    feats = enc(torch.zeros(2, 1, 16, 16, 16))
    assert [f.shape[1] for f in feats] == enc.out_channels == [4, 8, 16]
    assert [f.shape[2] for f in feats] == [16 // s for s in enc.strides] == [8, 4, 2]


def test_swin_shapes_and_swinunetr_key_compat():
    from monai.networks.nets import SwinUNETR

    enc = build_encoder({"name": "swin", "feature_size": 12, "depths": [1, 1, 1, 1]})
    feats = enc(torch.zeros(1, 1, 32, 32, 32))
    assert [f.shape[1] for f in feats] == enc.out_channels == [12, 24, 48, 96, 192]
    assert [f.shape[2] for f in feats] == [16, 8, 4, 2, 1]
    ref = SwinUNETR(in_channels=1, out_channels=2, feature_size=12, depths=(1, 1, 1, 1))
    assert set(ref.swinViT.state_dict()) == set(enc.state_dict())
    ref.swinViT.load_state_dict(enc.state_dict())


def test_swin_sdpa_matches_monai_attention_with_grad():
    a = build_encoder({"name": "swin", "feature_size": 12, "depths": [1, 1, 1, 1], "sdpa": True})
    b = build_encoder({"name": "swin", "feature_size": 12, "depths": [1, 1, 1, 1], "sdpa": False})
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 1, 32, 32, 32)
    fa, fb = a(x), b(x)
    for u, v in zip(fa, fb):
        assert torch.allclose(u, v, atol=1e-4)
    sum(f.sum() for f in fa).backward()
    assert a.patch_embed.proj.weight.grad is not None


def test_swin_sdpa_shifted_windows_match_monai_with_batch_and_grads():
    """Depth 2 puts a shifted (masked) block in each stage; two samples share each window's bias."""
    torch.manual_seed(0)
    a = build_encoder({"name": "swin", "feature_size": 12, "sdpa": True})
    b = build_encoder({"name": "swin", "feature_size": 12, "sdpa": False})
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    fa, fb = a(x), b(x)
    for u, v in zip(fa, fb):
        assert torch.allclose(u, v, atol=1e-4)
    sum((f * f).sum() for f in fa).backward()
    sum((f * f).sum() for f in fb).backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-3, atol=1e-4), name


def test_vit_token_maps_and_ssl_task():
    from medssl.tasks import SSLTask, TasksConfig

    spec = {"name": "vit", "img_size": 32, "patch_size": 16, "hidden_size": 24, "mlp_dim": 48,
            "num_layers": 4, "num_heads": 4}
    enc = build_encoder(spec)
    feats = enc(torch.zeros(2, 1, 32, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 24, 2, 2, 2)] * 4
    out = SSLTask(spec, TasksConfig(views={"max_shift": 2}), 32)({"image": torch.rand(2, 1, 34, 34, 34), "seed": 0})
    assert torch.isfinite(out["loss"])


def test_one_fused_attention_switch_for_swin_and_vit():
    from monai.networks.blocks.selfattention import SABlock

    from medssl.models.encoders import build_encoder, use_fused_attention

    torch.manual_seed(0)
    x = torch.randn(1, 1, 32, 32, 32)
    for spec in ({"name": "swin", "feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
                 {"name": "vit", "img_size": 32, "patch_size": 16, "hidden_size": 48, "mlp_dim": 96,
                  "num_layers": 4, "num_heads": 2}):
        plain = build_encoder({**spec, "sdpa": False}).eval()
        fused = build_encoder({**spec, "sdpa": False}).eval()
        fused.load_state_dict(plain.state_dict())
        assert use_fused_attention(use_fused_attention(fused)) is fused  # idempotent
        blocks = [m for m in fused.modules() if isinstance(m, SABlock)]
        assert all(b.use_flash_attention for b in blocks)
        assert not any(getattr(m, "use_flash_attention", False) for m in plain.modules())
        with torch.no_grad():
            for a, b in zip(plain(x), fused(x)):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        assert build_encoder(spec)(x)[0].requires_grad  # on by default, gradients included
