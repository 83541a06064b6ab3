"""An untrusted MONAI bundle's config never runs: ``$`` expressions, references and foreign
``_target_`` components are refused with a typed error before anything is built."""

import json

import pytest
import torch

from medssl.artifacts.bundle import export_bundle, load_bundle_network
from medssl.artifacts.model import ModelArtifact
from medssl.errors import CheckpointError
from medssl.models.registry import build_network

SPEC = {"name": "cnn_unet", "in_channels": 1, "out_channels": 2, "encoder_kwargs": {"channels": [4, 8, 8, 8]}}


@pytest.fixture
def bundle(tmp_path):
    net = build_network(SPEC)
    art = ModelArtifact("segmentation", SPEC, net.state_dict(), {"0": "bg", "1": "a"}, "CT",
                        {"orientation": "RAS", "intensity": "ct_window"}, {"roi_size": [16, 16, 16]})
    return export_bundle(art, tmp_path / "bundle"), net


def _edit(bundle, change):
    path = bundle / "configs" / "inference.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def test_untrusted_bundle_written_by_medssl_loads(bundle):
    out, net = bundle
    rebuilt = load_bundle_network(out)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), net.eval()(x), atol=1e-5)


TOUCH = "$__import__('pathlib').Path({m!r}).touch()"
ATTACKS = {
    "expression argument": lambda c, m: c["network_def"].update(spec=TOUCH.format(m=m)),
    "foreign target": lambda c, m: c.update(network_def={"_target_": "pathlib.Path.touch", "self": m}),
    "nested component": lambda c, m: c["network_def"]["spec"].update(
        encoder_kwargs={"_target_": "pathlib.Path.touch", "self": m}),
    "expression as network_def": lambda c, m: c.update(network_def=TOUCH.format(m=m)),
    "os.system deep in a list": lambda c, m: c["network_def"]["spec"]["encoder_kwargs"].update(
        channels=[4, f"$__import__('os').system('touch {m}')"]),
    "reference": lambda c, m: c["network_def"].update(spec="@device"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_expressions_in_untrusted_bundle_are_refused_and_never_run(bundle, tmp_path, attack):
    out, _ = bundle
    marker = tmp_path / "ran"
    _edit(out, lambda c: ATTACKS[attack](c, str(marker)))
    with pytest.raises(CheckpointError) as info:
        load_bundle_network(out)
    assert info.value.code == "untrusted_bundle" and info.value.exit_status == 5
    assert "inference.json" in str(info.value) and "trusted=True" in str(info.value)
    assert not marker.exists()


def test_trusted_bundle_goes_through_monai_configparser(bundle, tmp_path):
    out, _ = bundle
    marker = tmp_path / "ran"
    _edit(out, lambda c: c.update(network_def={
        "_target_": "medssl.models.registry.build_network",
        "spec": f"$__import__('pathlib').Path({str(marker)!r}).touch() or {SPEC!r}"}))
    net = load_bundle_network(out, trusted=True)
    assert marker.exists() and type(net).__name__ == type(build_network(SPEC)).__name__


def test_unreadable_bundle_config_is_a_typed_error(bundle):
    out, _ = bundle
    (out / "configs" / "inference.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="inference.json"):
        load_bundle_network(out)
