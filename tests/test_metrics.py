"""Top-k accuracy, the confusion matrix and per-class accuracy against values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlab.metrics import confusion_matrix, format_confusion, per_class_accuracy, top_k_accuracy

# 4 samples, 6 classes; each row's classes by falling score are given in the comment
SCORES = np.array([
    [0.1, 0.9, 0.3, 0.0, 0.2, 0.5],   # 1 5 2 4 0 3
    [2.0, 1.0, 0.0, 3.0, -1.0, 0.5],  # 3 0 1 5 2 4
    [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],   # 4, then the tie 0 1 2 3 5 in class order
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],   # 0 1 2 3 4 5
])
LABELS = np.array([1, 0, 5, 5])
# the label's rank (0 = top): 0, 1, 5, 5


@pytest.mark.parametrize("k, expected", [(1, 1 / 4), (2, 2 / 4), (5, 2 / 4), (6, 4 / 4), (10, 1.0)])
def test_top_k_accuracy_by_hand(k, expected):
    assert top_k_accuracy(SCORES, LABELS, k) == pytest.approx(expected)


def test_top_k_accuracy_breaks_ties_by_class_index():
    scores = np.zeros((3, 5))
    assert top_k_accuracy(scores, np.array([0, 1, 4]), 1) == pytest.approx(1 / 3)  # argmax: class 0
    assert top_k_accuracy(scores, np.array([0, 1, 4]), 2) == pytest.approx(2 / 3)  # classes 0, 1
    assert top_k_accuracy(scores, np.array([4, 4, 4]), 4) == 0.0
    assert top_k_accuracy(scores, np.array([4, 4, 4]), 5) == 1.0
    # many ties of several values against a stable argsort, the documented rule
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, (500, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 500)
    for k in (2, 3, 5, 7, 11):
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        assert top_k_accuracy(scores, labels, k) == np.mean((top == labels[:, None]).any(1)), k


def test_top_k_accuracy_matches_argsort_on_random_scores(rng):
    scores = rng.standard_normal((200, 10))
    labels = rng.integers(0, 10, 200)
    for k in range(1, 11):
        top = np.argsort(-scores, axis=1)[:, :k]
        assert top_k_accuracy(scores, labels, k) == np.mean((top == labels[:, None]).any(1))


def test_confusion_matrix_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2, 1])
    predicted = np.array([0, 1, 1, 2, 0, 2, 1])
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 2]])
    counts = confusion_matrix(labels, predicted, 3)
    assert np.array_equal(counts, expected) and counts.dtype == np.int64
    # a class that never occurs, as truth or prediction, is a row and column of zeros
    assert np.array_equal(confusion_matrix(labels, predicted, 4)[:3, :3], expected)
    assert confusion_matrix(labels, predicted, 4)[3].sum() == 0


def test_confusion_matrix_uint8_labels_do_not_wrap_around():
    # 19·20 + 19 = 399 does not fit a uint8
    labels = np.array([19, 0, 19], np.uint8)
    predicted = np.array([19, 19, 3], np.uint8)
    counts = confusion_matrix(labels, predicted, 20)
    assert counts[19, 19] == 1 and counts[0, 19] == 1 and counts[19, 3] == 1 and counts.sum() == 3


def test_confusion_matrix_refuses_labels_outside_the_classes():
    with pytest.raises(ValueError, match=r"labels must be class indices 0 to 2. Received: values from 0 to"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="predicted must be class indices"):
        confusion_matrix(np.array([0, 1]), np.array([-1, 1]), 3)


def test_per_class_accuracy_is_recall_with_nan_for_an_empty_class():
    confusion = np.array([[3, 1, 0],
                          [0, 0, 0],   # no samples of class 1
                          [2, 0, 6]])
    acc = per_class_accuracy(confusion)
    assert acc[0] == pytest.approx(3 / 4) and acc[2] == pytest.approx(6 / 8)
    assert np.isnan(acc[1]) and acc.dtype == np.float64


def test_format_confusion_table():
    confusion = np.array([[5, 0, 1], [2, 123456, 0], [0, 0, 0]])
    text = format_confusion(confusion, ["T-shirt/top", "Trouser", "Pullover"])
    lines = text.splitlines()
    assert lines[0] == "true \\ predicted"
    assert lines[1].split() == ["T-shirt/t", "Trouser", "Pullover"]  # names cut to 9 characters
    assert [line.split() for line in lines[2:]] == [
        ["T-shirt/t", "5", "0", "1"], ["Trouser", "2", "123456", "0"], ["Pullover", "0", "0", "0"]]
    # columns line up: every row as long as the header, numbers right-aligned under the names
    assert len({len(line) for line in lines[1:]}) == 1
    assert lines[3].index("123456") + 6 == lines[1].index("Trouser") + len("Trouser")
