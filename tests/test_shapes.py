"""Output-size arithmetic and the words it is explained with."""

from __future__ import annotations

import pytest

import cnnlab as cl
from cnnlab import shapes


@pytest.mark.parametrize("value, text", [(32.0, "32"), (7 / 3, "2.33"), (2.5, "2.5"), (1.0, "1")])
def test_fmt(value, text):
    assert shapes.fmt(value) == text


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (8, 3, 2, (0, 1)),  # out 4: (4−1)·2 + 3 − 8 = 1, the odd one after
        (7, 3, 2, (1, 1)),  # out 4: 3·2 + 3 − 7 = 2
        (8, 4, 2, (1, 1)),
        (9, 4, 2, (1, 2)),
        (5, 3, 1, (1, 1)),
        (6, 4, 1, (1, 2)),
        (8, 1, 3, (0, 0)),  # the window is smaller than the stride: no padding needed
    ],
)
def test_same_padding_follows_tensorflow(size, kernel, stride, expected):
    before, after = shapes.same_padding(size, kernel, stride)
    assert (before, after) == expected
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


def test_formula_shows_the_arithmetic():
    axis = shapes.Axis("W", 32, 5, 1, (2, 2))
    assert axis.formula() == "(32 − 5 + 2·2)/1 + 1 = 32"
    assert shapes.Axis("W", 8, 3, 2, (0, 1)).formula() == "(8 − 3 + 0 + 1)/2 + 1 = 4"
    assert shapes.Axis("W", 7, 3, 3, (0, 0)).formula() == "(7 − 3 + 2·0)/3 + 1 = 2.33 → 2"
    assert shapes.Axis("W", 32, 2, 2, (0, 0)).formula(show_zero_pad=False) == "(32 − 2)/2 + 1 = 16"


def test_param_formula():
    assert shapes.param_formula([5, 5, 3], True, [10]) == "(5·5·3 + 1)·10 = 760"
    assert shapes.param_formula([7], False, [3]) == "7·3 = 21"
    assert shapes.param_formula([3, 1], False, [1, 3]) == "3·1·1·3 = 9"


def test_rectangular_failure_names_the_failing_axis():
    with pytest.raises(cl.ShapeError, match=r"^Conv2D: W2 = \(8 − 3 \+ 2·0\)/2 \+ 1 = 3.5 is not"):
        cl.Conv2D(1, 3, stride=2).output_shape((1, 9, 8))


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (cl.Conv2D(1, 5), (1, 3, 3), "window 5×5 does not fit the padded input. Expected H \\+ "
         "2·padding ≥ 5. Received: input size 3×3, padding=0"),
        (cl.MaxPool2D(2, padding=2), (1, 8, 8), "more than half the window"),
        (cl.Conv2D(1, 3), (1, 8), r"expects per-sample input \(C, H, W\)"),
        (cl.Conv1D(1, 3), (1, 8, 8), r"expects per-sample input \(C, L\)"),
        (cl.Dense(3), (2, 4, 4), "Put a Flatten"),
        (cl.Maxout(2), (5, 4, 4), "5 channels cannot be split into groups of pieces=2"),
        (cl.GlobalAvgPool2D(), (5,), r"expects per-sample input \(C, H, W\)"),
    ],
)
def test_impossible_shapes_raise_shape_error(layer, shape, message):
    with pytest.raises(cl.ShapeError, match=message):
        layer.output_shape(shape)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: cl.Conv2D(0, 3), "filters must be a positive int. Received: filters=0"),
        (lambda: cl.Conv2D(2, 0), "kernel_size must be ≥ 1"),
        (lambda: cl.Conv2D(2, (3, 3, 3)), "kernel_size must be an int or a pair"),
        (lambda: cl.Conv2D(2, 3, stride=0), "stride must be ≥ 1"),
        (lambda: cl.Conv2D(2, 3, padding=-1), "padding must be ≥ 0"),
        (lambda: cl.Conv2D(2, 3, padding="full"), 'padding must be an int, a pair, "same"'),
        (lambda: cl.Conv2D(2, 3, fit="ceil"), 'fit must be "exact" or "floor"'),
        (lambda: cl.Conv2D(2, 3, init="kaiming"), "init must be one of"),
        (lambda: cl.Conv1D(2, (3, 3)), "kernel_size must be an int ≥ 1"),
        (lambda: cl.Dense(0), "units must be a positive int"),
        (lambda: cl.LeakyReLU(1.5), r"alpha must be in \[0, 1\)"),
        (lambda: cl.Maxout(0), "pieces must be a positive int"),
        (lambda: cl.MulticlassSVM(margin=0), "margin must be > 0"),
    ],
)
def test_bad_hyperparameters_are_refused_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


FLAGS = shapes.Names(padding="--pad {}", padding_at_most="--pad ≤ {}", stride="--stride {}",
                     floor="", one_value=True)


@pytest.mark.parametrize(
    "layer, shape, api, named",
    [
        (cl.MaxPool2D(3, 3), (3, 7, 7), 'Use padding=1, stride 1 or 2, or fit="floor".',
         "Use --pad 1, or --stride 1 or 2."),
        (cl.Conv2D(1, 2, stride=2), (1, 7, 7), 'Use stride 1, or fit="floor".', "Use --stride 1."),
        (cl.MaxPool1D(3, padding=2), (2, 9), "Use padding ≤ (1,).", "Use --pad ≤ 1."),
        (cl.MaxPool2D(2, padding=(1, 2)), (1, 8, 8), "Use padding ≤ (1, 1).", "Use --pad ≤ 1."),
        (cl.Conv2D(1, 5), (1, 3, 3), "Received: input size 3×3, padding=0",
         "Received: input size 3×3, --pad 0"),
    ],
)
def test_hints_named_words_the_fixes_for_a_front_end_and_only_inside_its_block(layer, shape, api, named):
    def message() -> str:
        with pytest.raises(cl.ShapeError) as error:
            layer.output_shape(shape)
        return str(error.value)

    before = message()
    assert before.endswith(api)
    with shapes.hints_named(FLAGS):
        assert message() == before.replace(api, named)  # the same arithmetic, other names
        with shapes.hints_named(shapes.API_NAMES):
            assert message() == before
        assert message().endswith(named)
    assert message() == before
