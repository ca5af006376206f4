"""The zoo: exact parameter counts of the reference implementations, multiply-adds, shapes, every
small model training a step, and ResNet-8 against its PyTorch twin."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlab as cl
from cnnlab import zoo
from tests.test_containers import twin

#: torchvision's counts at 224×224×3 with 1000 classes (torchvision.models.<name>().parameters())
#: and SENet's released SE-ResNet-50
IMAGENET_PARAMS = {
    "alexnet": 61_100_840, "vgg16": 138_357_544, "googlenet": 6_624_904, "resnet18": 11_689_512,
    "resnet34": 21_797_672, "resnet50": 25_557_032, "se-resnet50": 28_088_024,
}
SMALL = ["fmnist-cnn", "fmnist-cnn-bn", "lenet5", "mlp", "vgg-small", "resnet8", "resnet20",
         "mobilenet-small"]


@pytest.mark.parametrize("name", IMAGENET_PARAMS)
def test_imagenet_parameter_counts_equal_the_references(name):
    counts = zoo.count(name)
    assert counts.input_shape == (3, 224, 224)
    assert counts.params == IMAGENET_PARAMS[name]


@pytest.mark.parametrize("name", ["googlenet", "resnet50", "se-resnet50"])
def test_built_models_have_the_counted_parameters(name):
    # building allocates the weights (ResNet-50: 25.6 M values, under a second)
    model = zoo.get(name)
    assert model.count_params() == IMAGENET_PARAMS[name]
    assert model.out_shape == (1000,)


@pytest.mark.parametrize("name, shape", [
    *((name, shape) for name in SMALL for shape in [(1, 28, 28), (3, 32, 32)]),
    ("alexnet", (3, 64, 64)), ("vgg11", (3, 32, 32)),  # every other layer kind is in these
])
def test_count_agrees_with_the_built_model(name, shape):
    # count() works from the shapes alone; the built model is the ground truth
    assert zoo.count(name, num_classes=7, input_shape=shape).params == (
        zoo.get(name, num_classes=7, input_shape=shape).count_params())


@pytest.mark.parametrize("name, giga", [("resnet50", 4.1), ("vgg16", 15.5), ("resnet18", 1.8),
                                        ("alexnet", 0.71), ("googlenet", 1.5)])
def test_multiply_adds_match_the_published_figures(name, giga):
    assert zoo.count(name).macs / 1e9 == pytest.approx(giga, rel=0.02)


def test_vgg_and_resnet_macs_by_hand():
    # VGG-16's first conv: 3·3·3·64 weights used at 224·224 positions
    first = zoo.vgg16(build=False).layers[0]
    assert first.macs((3, 224, 224)) == 3 * 3 * 3 * 64 * 224 * 224
    # ResNet-50: the exact total of its 53 convolutions and the Dense layer
    assert zoo.count("resnet50").macs == 4_089_184_256
    assert zoo.count("vgg16").macs == 15_470_264_320


def test_alexnet_needs_floor_at_224_and_fits_227_exactly():
    first = zoo.alexnet(build=False).layers[0]
    text = cl.Sequential([first], input_shape=(3, 224, 224)).summary()
    assert "(224 − 11 + 2·2)/4 + 1 = 55.25 → 55" in text
    assert 'fit="floor" drops leftover rows and columns (as PyTorch) at: conv2d_1' in text
    paper = zoo.alexnet(num_classes=10, input_shape=(3, 227, 227), build=False)
    assert paper.layers[0].padding == (0, 0)
    assert paper.layers[0].output_shape((3, 227, 227)) == (64, 55, 55)
    assert zoo.count("alexnet", input_shape=(3, 227, 227)).params == IMAGENET_PARAMS["alexnet"]
    lrn = zoo.alexnet(lrn=True, build=False)
    assert sum(layer.kind == "LocalResponseNorm" for layer in lrn.layers) == 2


def test_imagenet_models_reach_torchvisions_sizes():
    def sizes(model, shape=(3, 224, 224)):
        out = []
        for layer, _ in model.sublayer_inputs(shape):
            shape = layer.output_shape(shape)
            if len(shape) == 3 and shape[1] not in out:
                out.append(shape[1])
        return out

    assert sizes(zoo.googlenet(build=False)) == [112, 56, 28, 14, 7]  # PyTorch's ceil_mode pools
    assert sizes(zoo.resnet50(build=False)) == [112, 56, 28, 14, 7]
    assert sizes(zoo.vgg11(build=False)) == [224, 112, 56, 28, 14, 7]
    # PyTorch's ceil_mode adds a window only where the last one doesn't fit: 50 → 25, 25 → 12
    odd = (3, 100, 100)
    assert sizes(zoo.googlenet(input_shape=odd, build=False), odd) == [50, 25, 12, 6, 3]


def test_se_resnet50_gates_every_block():
    model = zoo.se_resnet50(build=False)
    blocks = [layer for layer in model.layers if layer.kind == "Residual"]
    assert len(blocks) == 16
    assert all(block.branch.layers[-1].kind == "SqueezeExcite" for block in blocks)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_small_models_train_a_step_in_float32(name, shape, rng):
    model = zoo.get(name, num_classes=10, input_shape=shape, seed=1)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    loss = cl.SoftmaxCrossEntropy()
    value = loss.forward(model.forward(x, training=True), np.array([3, 7]))
    dx = model.backward(loss.backward())
    assert np.isfinite(value) and dx.shape == x.shape and dx.dtype == np.float32
    for key, p in model.parameters().items():
        assert p.grad is not None and p.grad.dtype == np.float32, key
        assert np.all(np.isfinite(p.grad)), key


def test_builders_take_the_same_arguments():
    for name, builder in zoo.MODELS.items():
        model = builder(num_classes=3, input_shape=(3, 64, 64), seed=2, build=False)
        assert model.output_shape((3, 64, 64)) == (3,), name
        assert name in zoo.names()
    assert zoo.get("SE_ResNet50", build=False).layers[-1].units == 1000
    with pytest.raises(ValueError, match="unknown model 'resnet99'; known models: alexnet, "):
        zoo.get("resnet99")


def test_same_seed_same_model():
    a, b = zoo.resnet8(seed=4), zoo.resnet8(seed=4)
    for key, p in a.parameters().items():
        np.testing.assert_array_equal(p.data, b.parameters()[key].data, err_msg=key)


def test_resnet8_matches_its_pytorch_twin(torch, parity, rng):
    """The whole model, BatchNorm in training mode: scores, loss, dx, all 29 parameters'
    gradients and the running statistics after the step, weights copied by name."""
    model = zoo.resnet8(num_classes=10, input_shape=(3, 16, 16), build=False)
    model.build((3, 16, 16), np.random.default_rng(0), np.float64)
    for p in model.parameters().values():
        p.data += 0.05 * rng.standard_normal(p.shape)
    params = model.parameters()
    p_t = {k: torch.tensor(p.data, requires_grad=True) for k, p in params.items()}
    b_t = {k: torch.tensor(v) for k, v in model.buffers().items()}
    x = rng.standard_normal((4, 3, 16, 16))
    labels = np.array([0, 3, 9, 3])
    x_t = torch.tensor(x, requires_grad=True)
    scores_t = twin(torch, model)(x_t, p_t, b_t)
    loss_t = torch.nn.functional.cross_entropy(scores_t, torch.tensor(labels))
    loss_t.backward()

    loss = cl.SoftmaxCrossEntropy()
    scores = model.forward(x, training=True)
    value = loss.forward(scores, labels)
    dx = model.backward(loss.backward())
    parity(scores, scores_t, 1e-9, "scores")
    assert value == pytest.approx(loss_t.item(), rel=1e-12)
    parity(dx, x_t.grad, 1e-9, "dx")
    assert len(params) == 29
    for key, p in params.items():
        parity(p.grad, p_t[key].grad, 1e-9, key)
    for key, value in model.buffers().items():
        parity(value, b_t[key], 1e-9, key)


def test_cnnlab_zoo_lists_params_macs_input_and_top5(capsys):
    from cnnlab.cli import main

    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert rows["resnet50"].split()[1:6] == ["25,557,032", "4.09", "G", "224×224×3", "5.25%"]
    assert rows["vgg16"].split()[1:6] == ["138,357,544", "15.47", "G", "224×224×3", "8.1%"]
    assert rows["mlp"].split()[1:6] == ["535,818", "0.5", "M", "28×28×1", "—"]
    assert set(zoo.names()) <= set(rows)
