"""Inputs that mean one thing: uint8 is pixels, float is normalised model input unless the
caller gives its pixel_range; the preprocessing (mean, std, scale, channel order, resize rule,
input size) is recorded in the model file and applied the same way by cl.predict, cl.evaluate,
`cnnlab predict` and `cnnlab evaluate`."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

import cnnlab as cl
from cnnlab import io
from cnnlab.data.folder import load_image, read_image
from tests.test_cli import cnnlab, one_line_failure


@pytest.fixture(scope="module")
def trained():
    x, y = cl.data.load("fashion-mnist-mini", "test")
    x, y = x[:600], y[:600]
    model = cl.Sequential([cl.Flatten(), cl.Dense(32), cl.ReLU(), cl.Dense(10)], input_shape=(1, 28, 28))
    cl.fit(model, (x, y), loss=cl.SoftmaxCrossEntropy(), optimizer=cl.optim.SGD(model, lr=0.05, momentum=0.9),
           epochs=1, batch_size=64, verbose=False)
    return model, x[:50], y[:50]


def test_uint8_float_pixels_and_normalised_input_give_the_same_predictions(trained):
    model, x, _ = trained
    reference = cl.predict(model, x)  # uint8: pixels
    for pixels, white in ((x.astype(np.float32), 255), (x / np.float32(255), 1.0)):
        np.testing.assert_allclose(cl.predict(model, pixels, pixel_range=white), reference, atol=1e-6)
    normalised = model.preprocess(x)
    np.testing.assert_allclose(cl.predict(model, normalised), reference, atol=1e-6)
    result = cl.evaluate(model, (x / np.float32(255), np.zeros(50, np.int64)), pixel_range=1.0)
    assert result["n"] == 50


@pytest.mark.parametrize("scale, white", [(1.0, 255), (1 / 255, 1)])
def test_float_pixels_without_a_range_are_taken_as_input_and_warned_about(trained, scale, white):
    model, x, _ = trained
    expected = rf"looks like pixels 0–{white} .* pass pixel_range={white}"
    with pytest.warns(cl.PixelRangeWarning, match=expected):
        cl.predict(model, x * np.float32(scale))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # normalised input: nothing to say
        cl.predict(model, model.preprocess(x))


def test_a_pixel_range_that_cannot_be_is_refused(trained):
    model, x, _ = trained
    with pytest.raises(ValueError, match="uint8 images are 0–255; pixel_range=1.0 is for floats"):
        cl.predict(model, x, pixel_range=1.0)
    with pytest.raises(ValueError, match="pixel_range is the value of a white pixel"):
        cl.predict(model, x.astype(np.float32), pixel_range=True)
    bare = cl.Sequential([cl.Flatten(), cl.Dense(10)], input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="uint8 images need model.preprocess"):
        cl.predict(bare, x)


def save_cropping(model, path) -> None:
    """`model` saved with the resize rule "center-crop" (the fixture keeps "stretch")."""
    model.preprocess.resize = "center-crop"
    try:
        cl.save(model, path)
    finally:
        model.preprocess.resize = "stretch"


def test_the_file_records_the_whole_preprocessing(trained, tmp_path):
    model, x, _ = trained
    save_cropping(model, tmp_path / "m.safetensors")
    recorded = json.loads(io.read_file(tmp_path / "m.safetensors")[1]["preprocess"])
    assert set(recorded) == {"mean", "std", "scale", "channels", "resize", "input_size"}
    assert recorded["channels"] == "L" and recorded["resize"] == "center-crop"
    assert recorded["input_size"] == [28, 28]
    loaded = cl.load(tmp_path / "m.safetensors")
    assert loaded.preprocess.resize == "center-crop"
    np.testing.assert_array_equal(cl.predict(loaded, x), cl.predict(model, x))


def test_center_crop_keeps_the_aspect_ratio(tmp_path):
    wide = np.zeros((20, 60), np.uint8)
    wide[:, 20:40] = 255  # a white square in the middle third
    Image.fromarray(wide).save(tmp_path / "wide.png")
    stretched = load_image(tmp_path / "wide.png", (1, 10, 10))
    cropped, note = read_image(tmp_path / "wide.png", (1, 10, 10), "center-crop")
    assert cropped.shape == (1, 10, 10) and cropped.min() > 200  # the middle square only
    assert stretched[0, :, 0].max() < 50 and stretched[0, :, 5].min() > 200  # squeezed, edges kept
    assert note.endswith("grayscale 20×60 → grayscale 10×10, center-crop")
    with pytest.raises(ValueError, match="resize must be one of stretch, center-crop"):
        load_image(tmp_path / "wide.png", (1, 10, 10), "fit")


def test_the_command_reads_images_by_the_models_rule_and_explains_a_float_model(trained, tmp_path):
    model, x, _ = trained
    save_cropping(model, tmp_path / "crop.safetensors")
    Image.fromarray(np.pad(x[0, 0], ((0, 0), (14, 14)))).save(tmp_path / "padded.png")  # 28×56
    result = cnnlab("predict", "crop.safetensors", "padded.png", "--json", "--top", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "padded.png: grayscale 28×56 → grayscale 28×28, center-crop" in result.stderr
    bare = cl.Sequential([cl.Flatten(), cl.Dense(10)], input_shape=(1, 28, 28))
    cl.save(bare, tmp_path / "float.safetensors")
    err = one_line_failure(cnnlab("predict", "float.safetensors", "padded.png", cwd=tmp_path))
    assert "records no preprocessing (it was trained on float arrays)" in err
