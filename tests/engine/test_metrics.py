"""Accuracy, macro precision/recall/F1, bits per byte and the MFU peak table."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from lmforge.engine.losses import IGNORE_INDEX
from lmforge.engine.metrics import MacroPRF, bits_per_byte, peak_flops, topk_hits


def prf(num_classes: int, preds, targets) -> dict[str, float]:
    metric = MacroPRF(num_classes)
    metric.update(torch.tensor(preds), torch.tensor(targets))
    return {k: v.item() for k, v in metric.compute().items()}


def test_macro_scores_by_hand():
    # class 0: tp 1, fp 2, fn 1; class 1: tp 1, fp 0, fn 1; class 2: tp 0, fp 1, fn 1;
    # class 3 is predicted only where nothing is, so it never appears and is left out
    scores = prf(4, preds=[0, 0, 1, 2, 0, 3], targets=[0, 1, 1, 0, 2, IGNORE_INDEX])
    precision = (1 / 3 + 1 / 1 + 0) / 3
    recall = (1 / 2 + 1 / 2 + 0) / 3
    f1 = (2 / 5 + 2 / 3 + 0) / 3  # 2tp / (2tp + fp + fn) per class
    assert scores == pytest.approx({"precision": precision, "recall": recall, "f1": f1}, rel=1e-6)
    assert scores["precision"] != pytest.approx(scores["recall"])  # P and R are not swapped


def test_agrees_with_torchmetrics_macro_scores():
    g = torch.Generator().manual_seed(0)
    num_classes = 40  # classes 30..39 never occur: both must leave them out
    targets = torch.randint(0, 30, (500,), generator=g)
    preds = torch.where(torch.rand(500, generator=g) < 0.6, targets, torch.randint(0, 30, (500,), generator=g))
    targets[torch.rand(500, generator=g) < 0.2] = IGNORE_INDEX
    ours = MacroPRF(num_classes)
    for chunk in range(0, 500, 128):  # accumulated over several updates, like a validation pass
        ours.update(preds[chunk : chunk + 128], targets[chunk : chunk + 128])
    got = ours.compute()
    kwargs = {"num_classes": num_classes, "average": "macro", "ignore_index": IGNORE_INDEX}
    for name, reference in (("precision", MulticlassPrecision), ("recall", MulticlassRecall), ("f1", MulticlassF1Score)):
        assert got[name].item() == pytest.approx(reference(**kwargs)(preds, targets).item(), abs=1e-6), name


def test_classes_that_never_occur_do_not_drag_the_score_down():
    scores = prf(50_000, preds=[5, 7, 9, 7], targets=[5, 7, 9, 7])
    assert scores == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})


def test_reset_starts_a_new_pass():
    metric = MacroPRF(3)
    metric.update(torch.tensor([0, 1]), torch.tensor([1, 0]))
    metric.reset()
    metric.update(torch.tensor([2]), torch.tensor([2]))
    assert metric.compute()["f1"].item() == 1.0


def test_top_k_hits_by_hand():
    logits = torch.tensor(
        [
            [0.1, 0.9, 0.0, 0.3, 0.2, 0.05, 0.4],  # target 1 is top-1
            [0.9, 0.1, 0.0, 0.3, 0.2, 0.05, 0.4],  # target 4 is 4th: top-5, not top-1
            [0.9, 0.1, 0.0, 0.3, 0.2, 0.05, 0.4],  # target 2 is last: neither
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # ignored
        ]
    )
    preds, hits = topk_hits(logits, torch.tensor([1, 4, 2, IGNORE_INDEX]), (1, 5))
    assert preds.tolist() == [1, 0, 0, 6]
    assert hits.tolist() == [1, 2]


def test_top_k_larger_than_the_vocabulary_counts_every_position():
    _, hits = topk_hits(torch.randn(3, 4), torch.tensor([0, 3, 2]), (1, 5))
    assert hits[1].item() == 3


def test_bits_per_byte():
    # 2 bits per token over 4 bytes per token is half a bit per byte
    assert bits_per_byte(torch.tensor(2 * math.log(2)), 4.0).item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    "name,peak",
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA GeForce GTX 1080", None),
    ],
)
def test_peak_flops_by_device_name(name, peak):
    assert peak_flops(name) == peak
