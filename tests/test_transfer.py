"""Transfer learning in Python: frozen BatchNorm in inference mode (gradient-checked), freezing
the body (model.freeze(up_to="head")), the head and body of a model, and features: a named
layer's activations (cl.features) and nearest neighbours in that space (cl.train.nearest),
against direct forwards and naive loops. Also the tiny image folder the command-line tests use.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import io
from tests.fixtures.make_folder import images
from tests.gradcheck import check_layer

Image = pytest.importorskip("PIL.Image")
SHAPES = Path(__file__).with_name("fixtures") / "shapes"
LOSS = cl.SoftmaxCrossEntropy()


def bn_net(seed: int = 0, dtype=np.float32) -> cl.Sequential:
    return cl.Sequential([cl.Conv2D(4, 3, padding=1), cl.BatchNorm2D(), cl.ReLU(), cl.MaxPool2D(2),
                          cl.Residual([cl.Conv2D(4, 3, padding=1), cl.BatchNorm2D()]), cl.ReLU(),
                          cl.Flatten(), cl.Dense(8), cl.BatchNorm1D(), cl.ReLU(), cl.Dense(3)],
                         input_shape=(3, 8, 8), seed=seed, dtype=dtype)


def tensors(model) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in io.model_tensors(model).items()}


def test_the_image_folder_fixture_is_what_its_generator_draws():
    expected = images()
    files = sorted(p for p in SHAPES.rglob("*") if p.is_file())
    assert [p.relative_to(SHAPES).as_posix() for p in files] == sorted(expected)
    assert sum(p.stat().st_size for p in files) < 100_000
    for path in files:
        assert np.array_equal(np.asarray(Image.open(path)), expected[path.relative_to(SHAPES).as_posix()])


# ------------------------------------------------------------------- frozen BatchNorm
@pytest.mark.parametrize("layer, shape", [(cl.BatchNorm2D(), (3, 4, 5)), (cl.BatchNorm1D(), (6,))])
def test_frozen_batchnorm_is_its_inference_forward_and_gradient_checks(layer, shape, rng):
    layer.build(shape, rng, np.float64)
    layer.running_mean[...] = rng.standard_normal(shape[0])
    layer.running_var[...] = rng.random(shape[0]) + 0.5
    layer.weight.data[...] = rng.standard_normal(shape[0])
    layer.weight.trainable = layer.bias.trainable = False
    stats = layer.running_mean.copy(), layer.running_var.copy()
    x = rng.standard_normal((5, *shape))
    assert layer.frozen
    assert np.array_equal(layer.forward(x, training=True), layer.forward(x))  # bit for bit
    check_layer(layer, x, rng)  # dx = γ/σ_r·dy, dγ, dβ against central differences
    assert np.array_equal(layer.running_mean, stats[0]) and np.array_equal(layer.running_var, stats[1])
    layer.bias.trainable = True  # one of γ, β trains: batch statistics again
    layer.forward(x, training=True)
    assert not layer.frozen and not np.array_equal(layer.running_mean, stats[0])


def test_a_frozen_body_stays_bit_identical_through_fit_and_the_head_trains(rng):
    model = bn_net()
    x = rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    y = np.arange(40) % 3
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.1), epochs=1,
           batch_size=16, verbose=False)  # moves the running statistics away from 0 and 1
    assert model.freeze(up_to="head") is model and model.head_index() == 10
    assert model.body_names() == ["conv2d_1", "batchnorm2d_1", "residual_1", "dense_1",
                                  "batchnorm1d_1"]
    before = tensors(model)
    cl.fit(model, (x, y), loss=LOSS, optimizer=cl.optim.SGD(model, lr=0.1, momentum=0.9,
                                                            weight_decay=1e-3),
           epochs=2, batch_size=16, verbose=False)
    after = tensors(model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {"param.dense_2.weight", "param.dense_2.bias"}  # BatchNorm buffers included
    # the frozen body computes in training what it computes in inference
    h_train = h_test = model.preprocess(x[:5])
    for layer in model.layers[:10]:
        h_train, h_test = layer.forward(h_train, training=True), layer.forward(h_test)
        assert np.array_equal(h_train, h_test), layer.name


def test_backward_through_a_frozen_body_gives_the_inference_gradient(rng):
    """With input_grad=True the frozen layers run their backward: dL/dx is that of the
    inference function, checked against central differences on the whole model."""
    model = bn_net(dtype=np.float64)
    for layer in model.layers:
        for name, b in layer.buffers().items():
            b[...] = rng.random(b.shape) + (0.5 if name.endswith("var") else 0)
    model.freeze(up_to="head")
    x, y = rng.standard_normal((3, 3, 8, 8)), np.array([0, 1, 2])
    LOSS.forward(model.forward(x, training=True), y)
    dx = model.backward(LOSS.backward())
    eps, i = 1e-6, (1, 2, 3, 4)
    plus, minus = x.copy(), x.copy()
    plus[i] += eps
    minus[i] -= eps
    numeric = (LOSS.forward(model.forward(plus), y) - LOSS.forward(model.forward(minus), y)) / (2 * eps)
    assert abs(dx[i] - numeric) < 1e-7 * max(1, abs(numeric))


def test_freeze_head_needs_a_head():
    with pytest.raises(ValueError, match=re.escape("head_index: the model has no Dense layer")):
        cl.Sequential([cl.Conv2D(2, 3)], input_shape=(1, 4, 4)).freeze(up_to="head")
    with pytest.raises(ValueError, match=re.escape("body_names: the model has no Dense layer")):
        cl.Sequential([cl.Conv2D(2, 3)], input_shape=(1, 4, 4)).body_names()


# --------------------------------------------------------------------------- features
def test_features_of_a_top_level_layer_are_its_forward_output(rng):
    model = bn_net()
    x = rng.standard_normal((7, 3, 8, 8)).astype(np.float32)
    h = x
    for layer in model.layers[:6]:
        h = layer.forward(h)
    got = cl.features(model, x, layer="relu_2", batch_size=3)  # 3 batches, the last of 1
    assert got.shape == (7, 4, 4, 4) and got.dtype == np.float32
    assert np.array_equal(got, h)
    # the default: the layer before the head, the input the classifier sees
    scores = model.layers[-1].forward(cl.features(model, x))
    np.testing.assert_allclose(scores, model.forward(x), rtol=1e-6)


def test_features_of_a_layer_inside_a_container(rng):
    model = bn_net()
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    h = x
    for layer in model.layers[:4]:
        h = layer.forward(h)
    branch = model.layers[4].branch
    expected = branch.layers[1].forward(branch.layers[0].forward(h))
    got = cl.features(model, x, layer="residual_1.branch.batchnorm2d_1")
    assert np.array_equal(got, expected)
    assert "forward" not in vars(branch.layers[1])  # the recording wrapper is gone


def test_features_apply_the_preprocessing_to_pixels(rng):
    model = bn_net()
    model.preprocess = cl.data.Preprocess(mean=[100, 110, 120], std=[50, 60, 70])
    pixels = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    assert np.array_equal(cl.features(model, pixels, layer="conv2d_1"),
                          cl.features(model, model.preprocess(pixels), layer="conv2d_1"))


def test_features_name_the_layers_when_one_is_unknown():
    with pytest.raises(ValueError, match=re.escape(
            "features: no layer named 'conv9'; the layers are conv2d_1, batchnorm2d_1, relu_1, "
            "maxpool2d_1, residual_1, relu_2, flatten_1, dense_1, batchnorm1d_1, relu_3, dense_2 (as "
            "summary() names them; a layer inside a container by its qualified name, e.g. "
            "residual_1.branch.conv2d_1)")):
        cl.features(bn_net(), np.zeros((1, 3, 8, 8), np.float32), layer="conv9")
    with pytest.raises(ValueError, match="no layer named 'residual_1.branch.conv2d_9'"):
        cl.features(bn_net(), np.zeros((1, 3, 8, 8), np.float32), layer="residual_1.branch.conv2d_9")


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_nearest_against_a_naive_loop(distance, rng):
    queries, pool = rng.standard_normal((4, 2, 3)), rng.standard_normal((9, 2, 3))
    pool[5] = 3 * queries[1]  # the same direction: cosine distance 0
    pool[7] = 0  # a zero vector: cosine distance 1
    indices, distances = cl.train.nearest(queries, pool, k=4, distance=distance)
    for q, a in enumerate(queries.reshape(4, -1)):
        naive = []
        for b in pool.reshape(9, -1):
            if distance == "euclidean":
                naive.append(float(np.sqrt(np.sum((a - b) ** 2))))
            else:
                norm = np.linalg.norm(a) * np.linalg.norm(b)
                naive.append(1.0 - (float(a @ b) / norm if norm else 0.0))
        order = sorted(range(9), key=lambda j: (naive[j], j))[:4]
        assert indices[q].tolist() == order
        np.testing.assert_allclose(distances[q], [naive[j] for j in order], atol=1e-12)
    if distance == "cosine":
        assert indices[1, 0] == 5 and abs(distances[1, 0]) < 1e-12


def test_nearest_leaves_out_the_query_itself_and_breaks_ties_by_index():
    pool = np.array([[1.0, 0], [1, 0], [0, 1], [1, 0]])
    indices, distances = cl.train.nearest(pool[:2], pool, k=5, exclude=np.array([0, -1]))
    assert indices.tolist() == [[1, 3, 2], [0, 1, 3]] and distances.shape == (2, 3)
    with pytest.raises(ValueError, match="nearest: distance must be one of cosine, euclidean"):
        cl.train.nearest(pool, pool, distance="manhattan")
    with pytest.raises(ValueError, match="queries have 2 features per sample, the pool 3"):
        cl.train.nearest(pool, np.zeros((2, 3)))
