"""Sequential: building, naming, parameters, the summary and the errors a user meets."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl


def reference(seed=0, dtype=np.float32):
    return cl.Sequential(
        [
            cl.Conv2D(32, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2),
            cl.Conv2D(64, 3, padding=1), cl.ReLU(), cl.MaxPool2D(2),
            cl.Flatten(), cl.Dense(128), cl.ReLU(), cl.Dense(10),
        ],
        input_shape=(1, 28, 28), seed=seed, dtype=dtype,
    )


def test_reference_network_shapes_and_counts():
    model = reference()
    assert model.count_params() == 320 + 18_496 + 401_536 + 1_290
    assert [layer.name for layer in model.layers[:4]] == [
        "conv2d_1", "relu_1", "maxpool2d_1", "conv2d_2"]
    assert list(model.parameters())[:3] == ["conv2d_1.weight", "conv2d_1.bias", "conv2d_2.weight"]
    assert model.parameters()["dense_1.weight"].shape == (128, 3136)
    x = np.zeros((3, 1, 28, 28), np.float32)
    assert model.forward(x).shape == (3, 10)
    assert model(x).dtype == np.float32


def test_summary_shows_the_arithmetic_and_totals():
    text = reference().summary()
    assert "conv2d_1 (Conv2D)" in text
    assert "H2 = W2 = (28 − 3 + 2·1)/1 + 1 = 28;  params = (3·3·1 + 1)·32 = 320" in text
    assert "H2 = W2 = (28 − 2)/2 + 1 = 14;  params = 0" in text
    assert "params = (3136 + 1)·128 = 401,536" in text
    assert "Total params: 421,642 (1.6 MiB)" in text
    assert "Activations: 88,074 values per sample" in text


def test_summary_of_the_lectures_layer():
    model = cl.Sequential([cl.Conv2D(10, 5, padding=2), cl.MaxPool2D(2)], input_shape=(3, 32, 32))
    rows = model.summary().splitlines()
    assert rows[2].split()[:4] == ["conv2d_1", "(Conv2D)", "32×32×10", "760"]
    assert "(32 − 5 + 2·2)/1 + 1 = 32" in rows[2]
    assert "(5·5·3 + 1)·10 = 760" in rows[2]
    assert rows[3].split()[:4] == ["maxpool2d_1", "(MaxPool2D)", "16×16×10", "0"]


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = reference(seed=3), reference(seed=3), reference(seed=4)
    for name, p in a.parameters().items():
        np.testing.assert_array_equal(p.data, b.parameters()[name].data)
    assert not np.array_equal(a.parameters()["conv2d_1.weight"].data,
                              c.parameters()["conv2d_1.weight"].data)


def test_auto_init_follows_the_activation():
    model = cl.Sequential(
        [cl.Dense(400), cl.Tanh(), cl.Dense(400), cl.ReLU(), cl.Dense(400), cl.Dense(10)],
        input_shape=(400,),
    )
    assert [layer.resolved_init() for layer in model.layers if hasattr(layer, "units")] == [
        "xavier", "he", "xavier", "xavier"]
    pooled = cl.Sequential([cl.Conv2D(4, 3), cl.MaxPool2D(2), cl.Sigmoid()], input_shape=(1, 6, 6))
    assert pooled.layers[0].resolved_init() == "xavier"  # pooling is looked through
    assert cl.Conv2D(4, 3, init="zeros").build((1, 5, 5)).weight.data.max() == 0


def test_model_backward_fills_every_grad_and_does_not_accumulate(rng):
    model = reference(dtype=np.float64)
    x = rng.standard_normal((2, 1, 28, 28))
    loss = cl.SoftmaxCrossEntropy()
    loss.forward(model.forward(x, training=True), np.array([1, 7]))
    dx = model.backward(loss.backward())
    assert dx.shape == x.shape
    first = {k: p.grad.copy() for k, p in model.parameters().items()}
    loss.forward(model.forward(x, training=True), np.array([1, 7]))
    model.backward(loss.backward())
    for name, p in model.parameters().items():
        np.testing.assert_array_equal(p.grad, first[name])  # assigned, not added


def test_nested_sequential_qualifies_names():
    inner = cl.Sequential([cl.Conv2D(2, 3, padding=1), cl.ReLU()])
    model = cl.Sequential([inner, cl.Flatten(), cl.Dense(3)], input_shape=(1, 4, 4))
    assert "sequential_1.conv2d_1.weight" in model.parameters()
    assert model.count_params() == (9 + 1) * 2 + (32 + 1) * 3


@pytest.mark.parametrize(
    "x, error, message",
    [
        (np.zeros((2, 3, 28, 28), np.float32), cl.ShapeError,
         r"Conv2D #1 \(conv2d_1\): expected input \(N, 1, 28, 28\) \(N, C, H, W\), received "
         r"x.shape=\(2, 3, 28, 28\): 3 channels instead of 1"),
        (np.zeros((2, 1, 32, 32), np.float32), cl.ShapeError,
         r"spatial size \(32, 32\) instead of \(28, 28\)"),
        (np.zeros((1, 28, 28), np.float32), cl.ShapeError,
         r"expected a batch of rank 4 \(N, C, H, W\) = \(N, 1, 28, 28\). Received: "
         r"x.shape=\(1, 28, 28\)"),
        (np.zeros((2, 1, 28, 28), np.uint8), ValueError,
         r"expected floating-point input, received dtype=uint8"),
    ],
)
def test_bad_input_to_forward_names_the_layer(x, error, message):
    with pytest.raises(error, match=message):
        reference().forward(x)


def test_float64_input_to_a_float32_model_is_computed_in_float32(rng):
    assert reference().forward(rng.standard_normal((1, 1, 28, 28))).dtype == np.float32


def test_construction_errors():
    with pytest.raises(ValueError, match=r"item 2 is not a layer. Received: type .*ReLU\(\) not"):
        cl.Sequential([cl.Dense(3), cl.ReLU])
    relu = cl.ReLU()
    with pytest.raises(ValueError, match="item 3 .* same object as an earlier item"):
        cl.Sequential([relu, cl.Dense(2), relu])
    with pytest.raises(RuntimeError, match="not built. Pass input_shape"):
        cl.Sequential([cl.Dense(2)]).forward(np.zeros((1, 3)))
    with pytest.raises(cl.ShapeError, match=r"^Dense #2 \(dense_1\): expects flat"):
        cl.Sequential([cl.Conv2D(2, 3), cl.Dense(2)], input_shape=(1, 5, 5))


def test_backward_checks_dy_shape(rng):
    model = reference()
    model.forward(rng.standard_normal((2, 1, 28, 28)), training=True)
    with pytest.raises(cl.ShapeError, match=r"dense_2\): dy must have the shape .*\(2, 10\)"):
        model.backward(np.ones((2, 9), np.float32))


def test_explain_walks_every_layer():
    model = cl.Sequential([cl.Conv2D(10, 5, padding=2), cl.ReLU(), cl.MaxPool2D(2)],
                          input_shape=(3, 32, 32))
    text = model.explain()
    assert text.count("accepts") == 3
    assert "(32 − 5 + 2·2)/1 + 1 = 32" in text and "(32 − 2 + 2·0)/2 + 1 = 16" in text
