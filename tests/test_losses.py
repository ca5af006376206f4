"""Losses: hand-computed values, gradients, stability and the errors on bad labels."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from tests.gradcheck import assert_close, numeric_grad

# cs231n's worked SVM example: cat, car, frog scores for three images
SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LABELS = np.array([0, 1, 2])


def test_svm_worked_example():
    # max(0, 5.1 − 3.2 + 1) + max(0, −1.7 − 3.2 + 1) = 2.9;  0;  12.9  → mean 5.27
    assert cl.MulticlassSVM().forward(SCORES, LABELS) == pytest.approx((2.9 + 0 + 12.9) / 3)


def test_softmax_worked_example():
    p = np.exp(SCORES[0]) / np.exp(SCORES[0]).sum()
    assert cl.SoftmaxCrossEntropy().forward(SCORES[:1], LABELS[:1]) == pytest.approx(-np.log(p[0]))


def test_uniform_scores_give_log_k():
    loss = cl.SoftmaxCrossEntropy().forward(np.zeros((4, 10)), np.arange(4))
    assert loss == pytest.approx(np.log(10))


@pytest.mark.parametrize(
    "loss", [cl.SoftmaxCrossEntropy(), cl.SoftmaxCrossEntropy(0.1), cl.MulticlassSVM(),
             cl.MulticlassSVM(margin=2.0)]
)
def test_loss_gradients_match_central_differences(loss, rng):
    scores = rng.standard_normal((5, 4)) * 2
    labels = rng.integers(0, 4, 5)
    loss.forward(scores, labels)
    analytic = loss.backward()
    assert_close(analytic, numeric_grad(lambda: loss.forward(scores, labels), scores), 1e-6,
                 type(loss).__name__)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_at_huge_scores(dtype):
    scores = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    loss = cl.SoftmaxCrossEntropy()
    assert loss.forward(scores, np.array([0, 1])) == pytest.approx(2e4 / 2)
    grad = loss.backward()
    assert grad.dtype == dtype and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, -0.5, 0.5]], atol=1e-7)


def test_label_smoothing_matches_its_formula():
    scores = SCORES[:1]
    log_p = scores - np.log(np.exp(scores).sum())
    target = np.full(3, 0.1 / 3)
    target[0] += 0.9
    assert cl.SoftmaxCrossEntropy(0.1).forward(scores, LABELS[:1]) == pytest.approx(
        -(target * log_p).sum())


def test_float32_gradients_stay_float32():
    for loss in (cl.SoftmaxCrossEntropy(), cl.MulticlassSVM()):
        loss.forward(SCORES.astype(np.float32), LABELS)
        assert loss.backward().dtype == np.float32


@pytest.mark.parametrize(
    "scores, labels, error, message",
    [
        (SCORES, np.array([0, 1, 3]), cl.DataError,
         r"label 3 is out of range for 3 classes; labels must be in \[0, 2\]"),
        (SCORES, np.array([0, -1, 2]), cl.DataError, "label -1 is out of range"),
        (SCORES, np.array([0.0, 1.0, 2.0]), cl.DataError, "labels must be integer class indices"),
        (SCORES, np.array([0, 1]), cl.ShapeError, r"expected labels of shape \(3,\)"),
        (SCORES[0], np.array([0]), cl.ShapeError, r"scores must be a float array \(N, classes\)"),
        (np.zeros((0, 3)), np.zeros(0, int), cl.DataError, "the batch is empty"),
    ],
)
def test_bad_labels_and_scores(scores, labels, error, message):
    for loss in (cl.SoftmaxCrossEntropy(), cl.MulticlassSVM()):
        with pytest.raises(error, match=message):
            loss.forward(scores, labels)


def test_backward_before_forward_raises():
    with pytest.raises(RuntimeError, match=r"call forward\(scores, labels\) before backward"):
        cl.SoftmaxCrossEntropy().backward()
