"""MobileNetV2, ConvNeXt-T and mobilenet-small (issue 20, zoo part).

The oracle: plain-torch twins of torchvision's mobilenet_v2 and convnext_tiny with their
state_dict names (tests/reference_nets.py). Their parameter counts are torchvision's published
ones; their state_dicts, saved as safetensors, load into the zoo's models by the name tables
(cnnlab.zoo.layouts), and the logits agree: max|a − b| / max|b| ≤ 2e-4 in float32, eval mode,
BatchNorm with non-trivial statistics. In float64 and training mode (BatchNorm's batch
statistics, every parameter's gradient) they agree to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import cnnlab as cl
from cnnlab import zoo
from cnnlab.layers import Conv2D, DropPath, LayerScale, Residual
from tests.test_weights import state_dict, tensors

#: torchvision.models.<name>().parameters() at 1,000 classes
PARAMS = {"mobilenet-v2": 3_504_872, "convnext-tiny": 28_589_128}
#: the multiply-adds at 224×224 (torchvision's tables: 0.30 and 4.46 "GFLOPS")
MACS = {"mobilenet-v2": 300_774_272, "convnext-tiny": 4_455_531_264}
#: the state_dict sizes of torchvision's models: MobileNetV2's 52 BatchNorms hold 5 tensors each
#: (num_batches_tracked included), its 52 convolutions 1, the Linear 2; ConvNeXt-T's 18 blocks 9
#: each, its 5 LayerNorm2d and 5 convolutions outside the blocks 2 each, the Linear 2
STATE_DICT_SIZE = {"mobilenet-v2": 314, "convnext-tiny": 182}


@pytest.fixture(scope="module")
def nets(torch):
    """tests/reference_nets.py, with torch on one thread meanwhile (2 busy cores)."""
    from tests import reference_nets  # imports torch: only once the fixture found it

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield reference_nets
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", PARAMS)
def test_counts_equal_torchvisions_without_allocating(name, monkeypatch):
    def refuse(*_):
        raise AssertionError("count() built a convolution")

    with monkeypatch.context() as patch:
        patch.setattr(Conv2D, "_build", refuse)
        counts = zoo.count(name)
    assert counts == (PARAMS[name], MACS[name], (3, 224, 224))
    model = zoo.get(name)
    assert model.count_params() == PARAMS[name] and model.out_shape == (1000,)


@pytest.mark.parametrize("name", PARAMS)
def test_the_twins_are_torchvisions_size_and_names(nets, name):
    reference = nets.build(name)
    assert sum(p.numel() for p in reference.parameters()) == PARAMS[name]
    names = reference.state_dict()
    assert len(names) == STATE_DICT_SIZE[name]
    table = dict(zoo.LAYOUTS[name]().pairs)
    assert set(table) | {k for k in names if k.endswith("num_batches_tracked")} == set(names)


def test_mobilenet_v2_sizes_blocks_and_channels():
    model = zoo.mobilenet_v2(build=False)
    shape, sizes = (3, 224, 224), []
    for layer, _ in model.sublayer_inputs(shape):
        shape = layer.output_shape(shape)
        if len(shape) == 3 and shape[1] not in sizes:
            sizes.append(shape[1])
    assert sizes == [112, 56, 28, 14, 7]
    residuals = [layer for layer in model.layers if isinstance(layer, Residual)]
    assert len(residuals) == 10  # 17 blocks, 7 of them change the shape
    depthwise = [layer for _, layer in cl.core.walk(model)
                 if isinstance(layer, Conv2D) and layer.groups > 1]
    assert len(depthwise) == 17 and all(layer.kernel_size == (3, 3) for layer in depthwise)
    assert model.layers[-1].units == 1000 and model.layers[-2].rate == 0.2


def test_convnext_tiny_blocks_layer_scale_and_stochastic_depth():
    model = zoo.convnext_tiny(build=False)
    blocks = [layer for layer in model.layers if isinstance(layer, Residual)]
    assert len(blocks) == 18
    rates = [b.branch.layers[-1].rate if isinstance(b.branch.layers[-1], DropPath) else 0.0
             for b in blocks]
    assert rates == pytest.approx([0.1 * i / 17 for i in range(18)])
    assert all(isinstance(b.branch.layers[5], LayerScale) and b.branch.layers[5].init == 1e-6
               for b in blocks)
    assert [b.branch.layers[1].eps for b in blocks[:1]] == [1e-6]
    plain = zoo.convnext_tiny(stochastic_depth=0, build=False)
    assert not any(isinstance(layer, DropPath) for _, layer in cl.core.walk(plain))
    assert zoo.convnext_tiny(num_classes=5, input_shape=(3, 64, 64)).out_shape == (5,)


@pytest.mark.parametrize("name, size", [("mobilenet-v2", 96), ("convnext-tiny", 64)])
def test_logits_equal_the_torchvision_twins_in_float32(torch, nets, tmp_path, name, size):
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(0)
    reference = nets.randomize(nets.build(name), torch.randn(4, 3, size, size))
    save_torch(reference.state_dict(), tmp_path / "weights.safetensors")
    model = zoo.get(name, input_shape=(3, size, size), weights=tmp_path / "weights.safetensors")
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x).numpy()
    logits = model.forward(x.numpy())
    assert logits.dtype == np.float32 and model.class_names == zoo.imagenet_classes()
    assert np.abs(logits - expected).max() / np.abs(expected).max() <= 2e-4


@pytest.mark.parametrize("name, size", [("mobilenet-v2", 64), ("convnext-tiny", 32)])
def test_a_training_step_equals_the_twins_in_float64(torch, nets, tmp_path, parity, name, size):
    """BatchNorm on the batch's statistics, every parameter's gradient, the running statistics
    after the step; dropout and stochastic depth off (torch's draws are not ours)."""
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(2)
    reference = nets.randomize(nets.build(name, num_classes=10), torch.randn(4, 3, size, size))
    save_torch(reference.state_dict(), tmp_path / "weights.safetensors")
    reference.double().train()
    options = {"dropout": 0.0} if name == "mobilenet-v2" else {"stochastic_depth": 0.0}
    model = zoo.get(name, num_classes=10, input_shape=(3, size, size), build=False, **options)
    model.build((3, size, size), np.random.default_rng(0), np.float64)
    zoo.load_weights(model, tmp_path / "weights.safetensors", name)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    x = torch.randn(3, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    labels = np.array([1, 7, 3])
    loss_t = torch.nn.functional.cross_entropy(reference(x), torch.tensor(labels))
    loss_t.backward()
    loss = cl.SoftmaxCrossEntropy()
    assert loss.forward(model.forward(x.numpy(), training=True), labels) == pytest.approx(
        loss_t.item(), rel=1e-10)
    model.backward(loss.backward())
    theirs = dict(reference.named_parameters())
    ours = model.parameters()
    table = zoo.LAYOUTS[name]()
    for file, mine in table.pairs:
        if file in theirs:
            grad = theirs[file].grad.reshape(ours[mine].grad.shape)
            parity(ours[mine].grad, grad, 1e-9, file)
        else:  # a BatchNorm's running statistic after the step
            parity(model.buffers()[mine], reference.state_dict()[file], 1e-9, file)


@pytest.mark.parametrize("name", PARAMS)
def test_a_state_dict_loads_back_into_the_same_weights(tmp_path, name):
    source = zoo.get(name, num_classes=5, input_shape=(3, 32, 32), seed=3)
    weights = state_dict(source, name)
    if name == "convnext-tiny":  # torchvision's Linear and layer_scale shapes
        assert weights["features.5.8.block.3.weight"].shape == (1536, 384)
        assert weights["features.5.8.layer_scale"].shape == (384, 1, 1)
        assert source.parameters()["residual_15.branch.conv2d_2.weight"].shape == (1536, 384, 1, 1)
    save_file(weights, tmp_path / "w.safetensors")
    model = zoo.get(name, num_classes=5, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")
    loaded, expected = tensors(model), tensors(source)
    assert loaded.keys() == expected.keys()
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)
    assert model.preprocess.resize == ("center-crop:34" if name == "convnext-tiny"
                                       else "center-crop:37")


def test_convnext_weights_are_published_for_a_236_resize():
    assert zoo.imagenet_preprocess("convnext-tiny", (3, 224, 224)).resize == "center-crop:236"
    assert zoo.imagenet_preprocess("mobilenet_v2", (3, 224, 224)).resize == "center-crop:256"


def test_a_linear_of_another_shape_is_named_with_the_shape_it_needs(tmp_path):
    source = zoo.convnext_tiny(num_classes=3, input_shape=(3, 32, 32))
    weights = state_dict(source, "convnext-tiny")
    weights["features.1.0.block.3.weight"] = np.zeros((384, 96, 1, 1), np.float32)
    save_file(weights, tmp_path / "w.safetensors")
    with pytest.raises(cl.ModelFileError, match=r"1 of another shape: features\.1\.0\.block\.3\.weight "
                                                r"\(384, 96, 1, 1\) \(needs \(384, 96\)\)"):
        zoo.convnext_tiny(num_classes=3, input_shape=(3, 32, 32), weights=tmp_path / "w.safetensors")


@pytest.mark.parametrize("shape, params", [((1, 28, 28), 215_978), ((3, 32, 32), 216_266)])
def test_mobilenet_small_counts_trains_a_step_and_round_trips(tmp_path, rng, shape, params):
    model = zoo.mobilenet_small(input_shape=shape, seed=1)
    assert model.count_params() == zoo.count("mobilenet-small", input_shape=shape).params == params
    assert np.all(model.layers[-1].weight.data == 0)  # the zero-initialised classifier
    x = rng.standard_normal((4, *shape)).astype(np.float32)
    loss = cl.SoftmaxCrossEntropy()
    assert loss.forward(model.forward(x, training=True), np.array([0, 3, 9, 3])) == pytest.approx(
        np.log(10), rel=1e-6)
    dx = model.backward(loss.backward())
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert all(p.grad is not None and np.all(np.isfinite(p.grad)) for p in model.parameters().values())
    cl.save(model, tmp_path / "m.safetensors")
    again = cl.load(tmp_path / "m.safetensors")
    assert np.array_equal(again.forward(x), model.forward(x))


def test_cnnlab_zoo_lists_the_new_models(capsys):
    from cnnlab.cli import main

    assert main(["zoo"]) == 0
    rows = {line.split()[0]: line.split()[1:5] for line in capsys.readouterr().out.splitlines()
            if line.strip()}
    assert rows["mobilenet-v2"] == ["3,504,872", "0.30", "G", "224×224×3"]
    assert rows["convnext-tiny"] == ["28,589,128", "4.46", "G", "224×224×3"]
    assert rows["mobilenet-small"] == ["215,978", "7.3", "M", "28×28×1"]
