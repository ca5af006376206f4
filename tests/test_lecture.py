"""The lecture's own numbers (../shared/seed/000_7f61f30a1af053e2.txt), as tests."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl

# The convolution demo: a 5×5×3 input (shown padded by 1 to 7×7×3), channel by channel
X = np.array([
    [[0, 0, 2, 0, 2], [1, 2, 2, 2, 0], [0, 2, 1, 0, 0], [0, 2, 0, 2, 1], [1, 0, 2, 2, 0]],
    [[1, 0, 0, 2, 0], [1, 0, 1, 0, 1], [0, 0, 2, 1, 2], [1, 2, 1, 0, 0], [1, 2, 2, 0, 2]],
    [[0, 2, 2, 1, 0], [0, 2, 0, 0, 1], [1, 1, 1, 2, 1], [2, 0, 1, 2, 2], [2, 1, 1, 0, 0]],
])
W0 = [[[-1, 0, -1], [1, -1, 1], [-1, 0, -1]],
      [[0, -1, 1], [1, 1, 1], [-1, 1, -1]],
      [[0, 0, 0], [-1, 1, -1], [1, 1, -1]]]
W1 = [[[0, 1, 1], [-1, -1, -1], [1, -1, 1]],
      [[-1, 0, -1], [1, 1, 1], [-1, 1, -1]],
      [[0, 1, 0], [0, 0, -1], [1, -1, 0]]]
O0 = [[-3, -1, 0], [-1, -8, 2], [3, 0, 3]]
O1 = [[1, 4, 2], [-1, 4, 5], [3, 1, 3]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_convolution_demo_gives_the_lectures_output_volume(dtype):
    conv = cl.Conv2D(2, 3, stride=2, padding=1).build((3, 5, 5), dtype=dtype)
    conv.weight.data[...] = np.array([W0, W1])  # (K, C, F, F): w0[:, :, d] is channel d
    conv.bias.data[...] = [1, 0]
    out = conv.forward(X[None].astype(dtype))
    assert out.shape == (1, 2, 3, 3)
    np.testing.assert_array_equal(out[0, 0], O0)
    np.testing.assert_array_equal(out[0, 1], O1)


@pytest.mark.parametrize("stride, size", [(1, 5), (2, 3)])
def test_7x7_input_3x3_filter(stride, size):
    assert cl.Conv2D(1, 3, stride=stride).output_shape((1, 7, 7)) == (1, size, size)
    assert cl.MaxPool2D(3, stride=stride).output_shape((1, 7, 7)) == (1, size, size)


def test_stride_3_does_not_fit_and_says_2_33():
    message = (
        r"H2 = W2 = \(7 − 3 \+ 2·0\)/3 \+ 1 = 2.33 is not a whole number: a 3×3 window with "
        r'stride 3 doesn\'t fit a 7×7 input. Use padding=1, stride 1 or 2, or fit="floor".'
    )
    with pytest.raises(cl.ShapeError, match=message):
        cl.Conv2D(1, 3, stride=3).output_shape((1, 7, 7))
    with pytest.raises(cl.ShapeError, match=r"^MaxPool2D #3 \(maxpool2d_1\): H2 = W2 = "):
        cl.Sequential([cl.Conv2D(4, 3, padding=1), cl.ReLU(), cl.MaxPool2D(3)],
                      input_shape=(1, 7, 7))
    # floor mode does what PyTorch and Keras do: drops the leftover row and column
    assert cl.Conv2D(1, 3, stride=3, fit="floor").output_shape((1, 7, 7)) == (1, 2, 2)


@pytest.mark.parametrize("f, p", [(3, 1), (5, 2), (7, 3)])
def test_padding_f_minus_1_over_2_preserves_size(f, p):
    assert cl.Conv2D(1, f, padding=p).output_shape((3, 7, 7)) == (1, 7, 7)
    assert cl.Conv2D(1, f, padding="same").output_shape((3, 7, 7)) == (1, 7, 7)


def test_32x32x3_with_ten_5x5_filters_stride_1_pad_2():
    conv = cl.Conv2D(10, 5, stride=1, padding=2)
    assert conv.output_shape((3, 32, 32)) == (10, 32, 32)
    conv.build((3, 32, 32))
    assert conv.count_params() == 760
    assert conv.weight.shape == (10, 3, 5, 5)
    text = conv.explain((3, 32, 32))
    assert "(32 − 5 + 2·2)/1 + 1 = 32" in text
    assert "5·5·3 = 75 per filter" in text
    assert "(5·5·3 + 1)·10 = 760" in text
    assert "produces a volume H2×W2×D2 = 32×32×10" in text


def test_shrinking_without_padding_32_28_24():
    model = cl.Sequential([cl.Conv2D(6, 5), cl.ReLU(), cl.Conv2D(6, 5), cl.ReLU()],
                          input_shape=(3, 32, 32))
    assert [layer.out_shape[1] for layer in model.layers[::2]] == [28, 24]


def test_7_inputs_3_hidden_units_21_9_3_parameters():
    """Global connectivity 3×7 = 21; local connectivity 3×3 = 9; weight sharing 3×1 = 3."""
    dense = cl.Dense(3, bias=False).build((7,))
    local = cl.LocallyConnected1D(1, 3, stride=2, bias=False).build((1, 7))
    shared = cl.Conv1D(1, 3, stride=2, bias=False).build((1, 7))
    assert [dense.count_params(), local.count_params(), shared.count_params()] == [21, 9, 3]
    assert local.out_shape == shared.out_shape == (1, 3)  # 3 hidden units in each case
    assert dense.arithmetic((7,)) == "params = 7·3 = 21"
    assert local.arithmetic((1, 7)).endswith("params = 3·1·1·3 = 9")
    assert shared.arithmetic((1, 7)).endswith("params = 3·1·1 = 3")


def test_local_connectivity_is_a_convolution_whose_positions_do_not_share():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 7))
    local = cl.LocallyConnected1D(1, 3, stride=2, bias=False).build((1, 7), dtype=np.float64)
    shared = cl.Conv1D(1, 3, stride=2, bias=False).build((1, 7), dtype=np.float64)
    local.weight.data[...] = shared.weight.data  # the same filter at all three positions
    np.testing.assert_allclose(local.forward(x), shared.forward(x))


@pytest.mark.parametrize(
    "layer, shape, out",
    [
        (cl.MaxPool2D(2), (64, 224, 224), (64, 112, 112)),  # the classic pooling figure
        (cl.MaxPool2D(2, stride=2), (3, 4, 4), (3, 2, 2)),
        (cl.AvgPool2D(3, stride=2), (5, 7, 7), (5, 3, 3)),
        (cl.MaxPool1D(2), (4, 10), (4, 5)),
    ],
)
def test_pooling_sizes_keep_depth_and_have_no_parameters(layer, shape, out):
    assert layer.output_shape(shape) == out
    layer.build(shape)
    assert layer.count_params() == 0
    assert "D2 = D1" in layer.explain(shape)


def test_max_pooling_example():
    # the classic 4×4 depth slice, 2×2 filters and stride 2
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)
    pool = cl.MaxPool2D(2, stride=2).build((1, 4, 4))
    np.testing.assert_array_equal(pool.forward(x[None, None])[0, 0], [[6, 8], [3, 4]])


def test_last_dense_has_one_neuron_per_class():
    model = cl.Sequential([cl.Flatten(), cl.Dense(10)], input_shape=(1, 28, 28))
    assert model.forward(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_leaky_relu_is_max_of_0_1x_and_x():
    x = np.array([[-10.0, -1.0, 0.0, 2.0]])
    layer = cl.LeakyReLU().build((4,), dtype=np.float64)
    np.testing.assert_array_equal(layer.forward(x), np.maximum(0.1 * x, x))


def test_maxout_is_max_of_two_affine_maps():
    # max(w1ᵀx + b1, w2ᵀx + b2): a Dense with 2 units followed by Maxout(2)
    rng = np.random.default_rng(0)
    model = cl.Sequential([cl.Dense(2), cl.Maxout(2)], input_shape=(4,), dtype=np.float64)
    x = rng.standard_normal((5, 4))
    w, b = model.layers[0].weight.data, model.layers[0].bias.data
    expected = np.maximum(x @ w[0] + b[0], x @ w[1] + b[1])
    np.testing.assert_allclose(model.forward(x)[:, 0], expected)


def test_elu_formula():
    x = np.array([[-2.0, -0.5, 0.0, 3.0]])
    y = cl.ELU(alpha=1.0).build((4,), dtype=np.float64).forward(x)
    np.testing.assert_allclose(y, np.where(x >= 0, x, np.exp(x) - 1))
