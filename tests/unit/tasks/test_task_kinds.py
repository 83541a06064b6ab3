"""The fine-tune task objects: each task's spec, batches, metric and scoring behind one interface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medssl.data.labeled import PreparedCase
from medssl.errors import ConfigError
from medssl.models import build_network
from medssl.models.sliding import InferenceSettings
from medssl.tasks.finetune import ClassificationTask, SegmentationTask
from medssl.tasks.kinds import TASK_KINDS, task_kind

CNN = {"encoder": "cnn", "encoder_kwargs": {"channels": [4, 8]}}


def _seg_case(i: int = 0) -> PreparedCase:
    rng = np.random.default_rng(i)
    image = rng.normal(size=(1, 16, 16, 16)).astype(np.float32)
    label = np.zeros((16, 16, 16), np.int64)
    label[4:10, 4:10, 4:10] = 1
    fg = np.argwhere(label > 0).astype(np.int32)
    return PreparedCase(f"c{i}", image, np.eye(4), label, foreground={1: fg})


def test_unknown_task_is_a_config_error():
    assert set(TASK_KINDS) == {"segmentation", "classification"}
    with pytest.raises(ConfigError, match="task must be one of"):
        task_kind("detection")


def test_each_kind_names_its_metric_and_output():
    seg, cls = task_kind("segmentation"), task_kind("classification")
    assert (seg.metric, seg.output_arg, seg.output_type) == ("dice", "out_channels", "image")
    assert (cls.metric, cls.output_arg, cls.output_type) == ("balanced_accuracy", "num_classes", "probabilities")


def test_loss_modules_and_class_weight_checks():
    seg = task_kind("segmentation")
    net = build_network({"name": "cnn_unet", "out_channels": 2, **CNN})
    module = seg.module(net, [_seg_case()], 2, "balanced")
    assert isinstance(module, SegmentationTask)
    w = module.class_weights.tolist()
    assert w[1] > w[0] and np.isclose(np.mean(w), 1.0)  # the rarer foreground weighs more
    assert seg.module(net, [_seg_case()], 2, None).class_weights is None
    with pytest.raises(ConfigError, match="3 values for 2 classes"):
        seg.module(net, [_seg_case()], 2, [1.0, 1.0, 1.0])
    cls_net = build_network({"name": "classifier", "num_classes": 2, **CNN})
    cases = [PreparedCase(f"k{i}", np.zeros((1, 8, 8, 8), np.float32), np.eye(4), cls=c) for i, c in enumerate([0, 0, 1])]
    cls_module = task_kind("classification").module(cls_net, cases, 2, "balanced")
    assert isinstance(cls_module, ClassificationTask)
    np.testing.assert_allclose(cls_module.class_weights.tolist(), [3 / 4, 3 / 2])


def test_batches_repeat_for_the_same_generator_and_differ_otherwise():
    seg = task_kind("segmentation")
    make = seg.batches([_seg_case(0), _seg_case(1)], batch_size=2, crop_size=(8, 8, 8), pos_fraction=1.0,
                       augment=True, roi=(16, 16, 16))
    a, b = make(np.random.default_rng(3)), make(np.random.default_rng(3))
    c = make(np.random.default_rng(4))
    assert a["image"].shape == (2, 1, 8, 8, 8) and a["label"].shape == (2, 1, 8, 8, 8)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], c["image"])
    assert (a["label"] > 0).any()  # pos_fraction 1: every crop centred on foreground


def test_classification_batches_flip_only_when_augmenting():
    rng_image = np.random.default_rng(0).normal(size=(1, 8, 8, 8)).astype(np.float32)
    case = PreparedCase("k", rng_image, np.eye(4), cls=1)
    kind = task_kind("classification")
    plain = kind.batches([case], batch_size=4, crop_size=(8, 8, 8), pos_fraction=0.0, augment=False, roi=(8, 8, 8))
    batch = plain(np.random.default_rng(0))
    assert all(torch.equal(batch["image"][i, 0], torch.from_numpy(rng_image[0])) for i in range(4))
    assert batch["label"].tolist() == [1, 1, 1, 1]
    flipping = kind.batches([case], batch_size=1, crop_size=(8, 8, 8), pos_fraction=0.0, augment=True, roi=(8, 8, 8))
    seen = [flipping(np.random.default_rng(s))["image"] for s in range(8)]
    assert any(not torch.equal(x[0, 0], torch.from_numpy(rng_image[0])) for x in seen)


def test_score_and_metric_value_for_a_perfect_segmenter():
    case = _seg_case()

    class Oracle(torch.nn.Module):  # logits that reproduce the label exactly
        def forward(self, x):
            lab = torch.zeros_like(x[:, 0], dtype=torch.long)
            lab[:, 4:10, 4:10, 4:10] = 1
            return torch.nn.functional.one_hot(lab, 2).permute(0, 4, 1, 2, 3).float() * 10

    seg = task_kind("segmentation")
    res = seg.score(Oracle(), [case], {"0": "background", "1": "box"}, InferenceSettings(roi_size=(16, 16, 16)),
                    torch.device("cpu"), distances=False, n_boot=10)
    assert res["per_case"][0]["case"] == "c0"
    assert seg.metric_value(res) == pytest.approx(1.0)
    assert seg.predict(Oracle(), case, InferenceSettings(roi_size=(16, 16, 16)), torch.device("cpu")).sum() == 216
    assert seg.metric_value({"summary": {"dice": {"mean": float("nan")}}}) == 0.0
