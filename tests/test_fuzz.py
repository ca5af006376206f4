"""Fuzzing every reader with hypothesis: random, truncated and bit-flipped bytes get one of
cnnlab's own errors (or a valid result), promptly and in bounded memory.

What each reader may raise; anything else (IndexError, KeyError, struct.error, RecursionError,
UnicodeDecodeError, MemoryError, a warning turned error, ...) is a bug:

    IDX: read_idx, parse_idx (raw, .gz, .xz)        cl.DataError
    CIFAR-10 binary: read_cifar_batch               cl.DataError
    images: load_image, read_image, load_folder     cl.DataError
    model files: cl.load, io.from_architecture      cl.ModelFileError
    checkpoints: the Trainer's resume (fit(resume=)) cl.ModelFileError; or ValueError "resume: ..."
                                                    when an intact state belongs to another run
                                                    (seed, batch size, data size)
    config files: cli.runs.read_config              cli.common.UsageError (the CLI's exit status 2)

No hang: each example has a hypothesis deadline and each test a SIGALRM budget. Bounded memory:
while a test runs its address space may grow by at most MEMORY_HEADROOM (RLIMIT_AS), so a reader
that tries to allocate what a header claims fails with MemoryError, which is not allowed.
Examples per reader: 300 under CI (CI set), 50 otherwise, or CNNLAB_FUZZ_EXAMPLES.
"""

from __future__ import annotations

import gzip
import io as bytes_io
import json
import lzma
import os
import resource
import signal
import struct
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnlab as cl
from cnnlab import io
from cnnlab.cli import build_parser
from cnnlab.cli.common import UsageError
from cnnlab.cli.runs import read_config
from cnnlab.data import Preprocess
from cnnlab.data.cifar import read_cifar_batch
from cnnlab.data.folder import load_folder, load_image, read_image
from cnnlab.data.idx import parse_idx, read_idx
from cnnlab.train import Trainer
from cnnlab.train.evaluate import predict_scores

Image = pytest.importorskip("PIL.Image")

EXAMPLES = int(os.environ.get("CNNLAB_FUZZ_EXAMPLES", 300 if os.environ.get("CI") else 50))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
    derandomize=bool(os.environ.get("CI")),  # CI runs the same examples every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEMORY_HEADROOM = 1 << 30
TEST_BUDGET_S = 120


@pytest.fixture(autouse=True)
def bounded(request):
    """Address space limited to its size now + MEMORY_HEADROOM, and a SIGALRM after
    TEST_BUDGET_S, for the duration of one test."""
    def hang(signum, frame):
        raise TimeoutError(f"{request.node.name} ran longer than {TEST_BUDGET_S} s: a reader hangs")

    old_handler = signal.signal(signal.SIGALRM, hang)
    signal.alarm(TEST_BUDGET_S)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    status = Path("/proc/self/status")
    if status.exists():
        vm = next(int(line.split()[1]) << 10 for line in status.read_text().splitlines()
                  if line.startswith("VmSize:"))
        limit = vm + MEMORY_HEADROOM
        if hard == resource.RLIM_INFINITY or limit < hard:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# ------------------------------------------------------------------ mutations
@st.composite
def mutated(draw, seeds) -> bytes:
    """One of `seeds` truncated, bit-flipped, overwritten or spliced; or random bytes.
    Positions favour the first 64 bytes, where the headers are."""
    data = bytearray(draw(st.sampled_from(seeds)))
    how = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "random", "as is"]))
    if how == "random" or not data:
        return draw(st.binary(max_size=4096))

    def position() -> int:
        return draw(st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1)))

    if how == "truncate":
        return bytes(data[: position()])
    if how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[position()] ^= 1 << draw(st.integers(0, 7))
    elif how == "overwrite":
        i, chunk = position(), draw(st.binary(min_size=1, max_size=16))
        data[i : i + len(chunk)] = chunk
    elif how == "insert":
        i = position()
        data[i:i] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def expect_only(allowed, call, *args, **kwargs):
    """Calls the reader: a result or an exception of `allowed` is fine, anything else fails."""
    try:
        return call(*args, **kwargs)
    except allowed:
        return None


# ------------------------------------------------------------------------ IDX
def _idx(shape, kind=0x08) -> bytes:
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[kind]
    body = np.random.default_rng(len(shape)).integers(0, 256, int(np.prod(shape)) * itemsize, np.uint8)
    return bytes([0, 0, kind, len(shape)]) + np.array(shape, ">u4").tobytes() + body.tobytes()


IDX_SEEDS = [_idx((3, 4, 5)), _idx((7,)), _idx((2, 3), 0x0D), _idx((4,), 0x0E), _idx((0, 28, 28))]


@FUZZ
@given(raw=mutated(IDX_SEEDS), compression=st.sampled_from(["", ".gz", ".xz"]),
       damage_compressed=st.booleans(), data=st.data(), expect_ndim=st.sampled_from([None, 1, 3]))
def test_idx_readers_raise_only_data_error(folder, raw, compression, damage_compressed, data,
                                           expect_ndim):
    array = expect_only(cl.DataError, parse_idx, raw, expect_ndim=expect_ndim)
    assert array is None or isinstance(array, np.ndarray)
    if compression:
        raw = gzip.compress(raw, mtime=0) if compression == ".gz" else lzma.compress(raw)
        if damage_compressed:
            raw = data.draw(mutated([raw]))
    path = folder / f"images{compression}"
    path.write_bytes(raw)
    array = expect_only(cl.DataError, read_idx, path, expect_ndim=expect_ndim)
    assert array is None or isinstance(array, np.ndarray)


# -------------------------------------------------------------------- CIFAR-10
CIFAR_SEEDS = [bytes([k]) + bytes(range(256)) * 12 for k in (3, 9)] + [bytes(3073 * 2)]


@FUZZ
@given(raw=mutated(CIFAR_SEEDS))
def test_cifar_reader_raises_only_data_error(folder, raw):
    path = folder / "data_batch_1.bin"
    path.write_bytes(raw)
    result = expect_only(cl.DataError, read_cifar_batch, path)
    if result is not None:
        x, y = result
        assert x.shape == (len(y), 3, 32, 32) and y.max() <= 9


# --------------------------------------------------------------------- images
def _encoded(array, format, mode=None, **kwargs) -> bytes:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    buffer = bytes_io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def _image_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        _encoded(gray, "PNG"), _encoded(rgb, "PNG"), _encoded(rgba, "PNG"), _encoded(rgb, "PNG", "P"),
        _encoded(np.full((3, 3), 40000, np.uint16), "PNG"), _encoded(rgb, "JPEG", quality=90),
        _encoded(rgb, "JPEG", exif=exif), _encoded(gray, "GIF"), _encoded(rgb, "BMP"),
        _encoded(rgb, "TIFF"), _encoded(gray, "TIFF", compression="tiff_lzw"), _encoded(rgb, "WEBP"),
        _encoded(gray, "PPM"), _encoded(rgb, "PPM"),
    ]


IMAGE_SEEDS = _image_seeds()


@FUZZ
@given(raw=mutated(IMAGE_SEEDS), shape=st.sampled_from([(1, 8, 8), (3, 5, 7)]),
       name=st.sampled_from(["x.png", "x.jpg", "x.tif"]))
def test_image_readers_raise_only_data_error(folder, raw, shape, name):
    path = folder / name
    path.write_bytes(raw)
    image = expect_only(cl.DataError, load_image, path, shape)
    assert image is None or (image.shape == shape and image.dtype == np.uint8)
    result = expect_only(cl.DataError, read_image, path, shape)
    assert result is None or (result[0].shape == shape and (result[1] is None or isinstance(result[1], str)))


def test_a_folder_of_damaged_images_raises_only_data_error(folder):
    rng = np.random.default_rng(5)
    root = folder / "damaged"
    for i, seed in enumerate(IMAGE_SEEDS):
        (root / "a").mkdir(parents=True, exist_ok=True)
        damaged = bytearray(seed)
        damaged[rng.integers(len(damaged))] ^= 0x10
        (root / "a" / f"{i}.png").write_bytes(bytes(damaged[: rng.integers(8, len(damaged) + 1)]))
    expect_only(cl.DataError, load_folder, root, (1, 8, 8))


# ---------------------------------------------------------------- model files
def _model_bytes(folder: Path) -> bytes:
    model = cl.Sequential([cl.Conv2D(2, 3), cl.BatchNorm2D(), cl.ReLU(), cl.Flatten(), cl.Dense(3)],
                          input_shape=(1, 5, 5))
    model.preprocess = Preprocess([0.5], [0.25])
    model.class_names = ["a", "b", "c"]
    cl.save(model, folder / "seed.safetensors")
    return (folder / "seed.safetensors").read_bytes()


def _split(raw: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), raw[8 + size :]


def _join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@st.composite
def tampered_header(draw, raw: bytes) -> bytes:
    """The file with one field of its JSON header replaced: a tensor's dtype, shape or offsets,
    a metadata string, or one argument of one layer of the architecture."""
    header, data = _split(raw)
    meta = header["__metadata__"]
    target = draw(st.sampled_from(["tensor", "metadata", "layer"]))
    if target == "tensor":
        name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
        key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name][key] = draw(st.one_of(JSON, st.lists(st.integers(-1, 2**64), max_size=4),
                                           st.sampled_from(["BF16", "F8_E4M3", "C64", "BOOL", "U64"])))
    elif target == "metadata":
        key = draw(st.sampled_from(sorted(meta)))
        meta[key] = json.dumps(draw(JSON)) if draw(st.booleans()) else draw(st.text(max_size=20))
    else:
        arch = json.loads(meta["architecture"])
        layer = draw(st.sampled_from(arch["layers"]))
        key = draw(st.sampled_from([*layer, "bias", "__class__", "type"]))
        layer_types = sorted(io.architecture_json.layer_registry())
        layer[key] = draw(JSON | st.sampled_from([*layer_types, "builtins.eval"]))
        meta["architecture"] = json.dumps(arch)
    return _join(header, data)


@pytest.fixture(scope="module")
def model_file(folder) -> bytes:
    return _model_bytes(folder)


@FUZZ
@given(data=st.data())
def test_model_loading_raises_only_model_file_error(folder, model_file, data):
    raw = data.draw(st.one_of(mutated([model_file]), tampered_header(model_file)))
    path = folder / "model.safetensors"
    path.write_bytes(raw)
    model = expect_only(cl.ModelFileError, cl.load, path)
    assert model is None or isinstance(model, cl.Sequential)
    runs_finite(model)


def runs_finite(model) -> None:
    """A model that loaded runs: one forward pass on 2 samples gives finite scores. Skipped only
    for a model too big to run in the memory the fuzzer allows (its limits admitted it)."""
    if model is None:
        return
    need = io.footprint(model.layers, tuple(model.input_shape))
    if 2 * need.activations > 1 << 24:
        return
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape)).astype(model.dtype)
    if model.preprocess is not None:
        x = np.random.default_rng(0).integers(0, 256, (2, *model.input_shape), dtype=np.uint8)
    scores = predict_scores(model, x) if model.preprocess is not None else model.forward(x)
    assert np.isfinite(scores).all(), scores


# JSON text no json.dumps writes: nesting hundreds deep, non-finite numbers, sizes far beyond any
# limit (a list of `n` layers, a shape or filter count of 2**40)
NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", "[1, NaN]",
                              '{"a": Infinity}', "1" + "0" * 5000])
HUGE = st.one_of(st.sampled_from([2**31, 2**32, 2**40, 2**63, 2**64, 10**7, 10**12, -(2**63)]),
                 st.integers(1 << 16, 1 << 62))


@st.composite
def hostile_text(draw) -> str:
    kind = draw(st.sampled_from(["deep", "non-finite", "non-finite", "huge", "plain"]))
    if kind == "deep":
        depth = draw(st.one_of(st.integers(60, 1000), st.integers(1000, 20_000)))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}"), ('{"type": "ReLU", "x": ', "}")]))
        inner = draw(st.one_of(NON_FINITE, st.just("1"), st.just("[]")))
        return opener * depth + inner + closer * depth * draw(st.sampled_from([1, 1, 0]))
    if kind == "non-finite":
        return draw(NON_FINITE)
    if kind == "huge":
        return json.dumps(draw(st.one_of(HUGE, st.lists(HUGE, min_size=1, max_size=3))))
    return json.dumps(draw(JSON))


HOLE = "\x00HOLE"


@pytest.fixture(scope="module")
def float_args_file(folder) -> bytes:
    """A model file whose layers take numbers that reach the forward pass (eps, alpha, rate)."""
    model = cl.Sequential([cl.Conv2D(2, 3), cl.BatchNorm2D(), cl.LeakyReLU(0.1), cl.ELU(), cl.Dropout(0.2),
                           cl.Flatten(), cl.Dense(3)], input_shape=(1, 5, 5))
    model.preprocess = Preprocess([0.5], [0.25])
    cl.save(model, folder / "floats.safetensors")
    return (folder / "floats.safetensors").read_bytes()


@st.composite
def hostile_model_file(draw, raw: bytes) -> bytes:
    """The model file with hostile JSON text in one place: a metadata entry, one layer's argument,
    the input shape, the layer list (huge layer counts too), or a tensor's header entry."""
    header, data = _split(raw)
    meta = header["__metadata__"]
    arch = json.loads(meta["architecture"])
    text = draw(hostile_text())
    where = draw(st.sampled_from(["metadata", "layer", "layer", "layer", "input_shape", "layers", "tensor"]))
    if where == "metadata":
        meta[draw(st.sampled_from(sorted(meta)))] = text  # the text itself, as the entry's JSON
    else:
        if where == "layer":
            layer = draw(st.sampled_from(arch["layers"]))
            layer[draw(st.sampled_from([*layer, "filters", "units", "kernel_size"]))] = HOLE
        elif where == "input_shape":
            arch["input_shape"] = draw(st.sampled_from([HOLE, [HOLE, 5, 5], [1, HOLE, HOLE]]))
        elif where == "layers":
            count = draw(st.sampled_from([10_001, 100_000, 2]))
            arch["layers"] = HOLE
            text = json.dumps([{"type": "ReLU"}] * count) if draw(st.booleans()) else text
        meta["architecture"] = json.dumps(arch).replace(json.dumps(HOLE), text)
        if where == "tensor":
            name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
            header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = HOLE
    body = json.dumps(header).replace(json.dumps(HOLE), text).encode()
    return struct.pack("<Q", len(body)) + body + data


@FUZZ
@given(data=st.data())
def test_hostile_json_in_a_model_file_is_refused_or_runs_finite(folder, float_args_file, data):
    """Deep nesting, NaN/Infinity/1e999, huge sizes: one ModelFileError, refused by the JSON and
    model limits before anything is allocated (this test's memory is limited); a model that loads
    runs to finite scores."""
    path = folder / "hostile.safetensors"
    path.write_bytes(data.draw(hostile_model_file(float_args_file)))
    model = expect_only(cl.ModelFileError, cl.load, path)
    runs_finite(model)


PLAIN = (st.none() | st.booleans() | st.integers(-3, 40) | st.integers(-(2**64), 2**64)
         | st.floats() | st.sampled_from(["same", "valid", "floor", "exact", "he", "auto", "x", ""])
         | st.lists(st.integers(-2, 9), max_size=3))


@st.composite
def architectures(draw) -> dict:
    import inspect

    registry = io.architecture_json.layer_registry()
    layers = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(sorted(registry)))
        names = sorted(set(inspect.signature(registry[kind].__init__).parameters) - {"self"})
        args = draw(st.dictionaries(st.sampled_from(names), PLAIN, max_size=4)) if names else {}
        layers.append({"type": kind, **args})
    shape = draw(st.lists(st.one_of(st.integers(1, 12), st.integers(-1, 1 << 17)), min_size=1, max_size=3))
    return {"type": "Sequential", "input_shape": shape, "dtype": draw(st.sampled_from(["float32", "x"])),
            "layers": layers}


@FUZZ
@given(arch=architectures())
def test_random_architectures_raise_only_model_file_error(arch):
    # a file holding 1,000 weights: whatever the architecture asks, memory stays bounded
    model = expect_only(cl.ModelFileError, io.from_architecture, arch, max_weights=1000)
    assert model is None or model.built


# ---------------------------------------------------------------- checkpoints
def _mlp() -> cl.Sequential:
    return cl.Sequential([cl.Flatten(), cl.Dense(5), cl.ReLU(), cl.Dropout(0.2), cl.Dense(3)],
                         input_shape=(1, 4, 4), seed=0)


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((24, 1, 4, 4)).astype(np.float32), rng.integers(0, 3, 24)


@pytest.fixture(scope="module")
def checkpoint(folder) -> bytes:
    model = _mlp()
    cl.fit(model, _data(), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.Adam(model), epochs=2,
           batch_size=8, out=folder / "run", checkpoint_every=4, callbacks=[cl.EarlyStopping("train_loss")],
           verbose=False, progress=False)
    return (folder / "run" / "last.ckpt.safetensors").read_bytes()


@st.composite
def tampered_training(draw, raw: bytes) -> bytes:
    """The checkpoint with one field of its training state replaced or deleted (the state is
    JSON metadata, outside the tensors' SHA-256)."""
    header, data = _split(raw)
    training = json.loads(header["__metadata__"]["training"])
    key = draw(st.sampled_from(sorted(training)))
    if isinstance(training[key], dict) and training[key] and draw(st.booleans()):
        inner = draw(st.sampled_from(sorted(training[key])))
        training[key][inner] = draw(JSON)
    elif draw(st.integers(0, 4)) == 0:
        del training[key]
    else:
        training[key] = draw(JSON)
    header["__metadata__"]["training"] = json.dumps(training)
    return _join(header, data)


def _resume(path: Path) -> cl.Sequential | None:
    model = _mlp()
    trainer = Trainer(model, _data(), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.Adam(model),
                      epochs=3, batch_size=8, callbacks=[cl.EarlyStopping("train_loss")], verbose=False,
                      progress=False)
    try:
        trainer.resume(path)
    except cl.ModelFileError:
        return None
    except ValueError as error:  # only the plain ValueError saying the state is another run's
        if type(error) is not ValueError or not str(error).startswith("resume: "):
            raise
        return None
    return model


@FUZZ
@given(data=st.data())
def test_resuming_raises_only_model_file_error(folder, checkpoint, data):
    raw = data.draw(st.one_of(mutated([checkpoint]), tampered_training(checkpoint),
                              tampered_header(checkpoint)))
    path = folder / "last.ckpt.safetensors"
    path.write_bytes(raw)
    runs_finite(_resume(path))


def test_an_intact_checkpoint_resumes(folder, checkpoint):
    path = folder / "intact.ckpt.safetensors"
    path.write_bytes(checkpoint)
    _resume(path)  # the fuzzing above starts from a checkpoint that does resume


# --------------------------------------------------------------- config files
@pytest.fixture(scope="module")
def actions() -> dict:
    return build_parser().parse_args(["train"]).actions


TOML_VALUES = (
    st.integers(-(2**70), 2**70).map(str) | st.floats().map(repr) | st.text(max_size=12).map(json.dumps)
    | st.sampled_from(["true", "1979-05-27", "[1, 2]", "{a = 1}", "[3, 28, 28]", '"3x32x32"', "inf",
                       "nan", "0x10", '"sgd"', '"cosine"', '"' + "x" * 3000 + '"'])
)


@st.composite
def configs(draw, actions) -> bytes:
    keys = st.sampled_from(sorted(actions) + ["learning-rate", "batch_size", "a.b", "[t]", "resume"])
    lines = [f"{draw(keys)} = {draw(TOML_VALUES)}" for _ in range(draw(st.integers(0, 5)))]
    text = "\n".join(lines).encode()
    how = draw(st.sampled_from(["text", "mutated", "deep"]))
    if how == "mutated":
        return draw(mutated([text or b"epochs = 3\n"]))
    if how == "deep":
        depth = draw(st.integers(1, 5000))
        return b"epochs = " + b"[" * depth + b"]" * depth
    return text


@FUZZ
@given(data=st.data())
def test_config_reader_raises_only_usage_errors(folder, actions, data):
    path = folder / "config.toml"
    path.write_bytes(data.draw(configs(actions)))
    options = expect_only(UsageError, read_config, path, actions)
    assert options is None or set(options) <= set(actions)


# ------------------------------------------------------- pretrained weights (foreign safetensors)
@pytest.fixture(scope="module")
def foreign_file() -> tuple[bytes, cl.Sequential]:
    """A resnet18 for 32×32 input, and a small safetensors file with resnet18's torchvision names
    (every tensor (2,): the shapes refused after the header is read) and a few real ones."""
    from safetensors.numpy import save

    model = cl.zoo.resnet18(num_classes=3, input_shape=(3, 32, 32))
    names = [f for f, _ in cl.zoo.layouts.layout("resnet18").pairs]
    tensors = {name: np.ones(2, np.float32) for name in names}
    tensors.update({"bn1.running_var": np.ones(64, np.float16), "layer1.0.bn1.num_batches_tracked":
                    np.array(3, np.int64), "extra.weight": np.zeros((2, 2), np.float64)})
    return save(tensors), model


@st.composite
def tampered_tensor(draw, raw: bytes) -> bytes:
    """The file with one tensor's dtype, shape or offsets in its JSON header replaced."""
    header, data = _split(raw)
    name = draw(st.sampled_from(sorted(k for k in header if k != "__metadata__")))
    key = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    header[name][key] = draw(st.one_of(JSON, st.lists(st.integers(-1, 2**64), max_size=4),
                                       st.sampled_from(["BF16", "F8_E4M3", "C64", "BOOL", "U64"])))
    return _join(header, data)


@FUZZ
@given(data=st.data())
def test_pretrained_weights_raise_only_model_file_error(folder, foreign_file, data):
    raw, model = foreign_file
    path = folder / "weights.safetensors"
    path.write_bytes(data.draw(st.one_of(mutated([raw]), tampered_tensor(raw))))
    expect_only(cl.ModelFileError, cl.zoo.load_weights, model, path, "resnet18")
    try:
        with io.foreign.ForeignFile(path) as file:
            for name in file.entries:
                expect_only(cl.ModelFileError, file.read, name)
    except cl.ModelFileError:
        pass
