"""Image folders and single image files (cnnlab.data.folder): modes, sizes, corrupt files, bombs."""

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.data.folder import load_folder, load_image, read_image

Image = pytest.importorskip("PIL.Image")


def _save(path, array, mode=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path, **kwargs)
    return path


@pytest.fixture
def folder(tmp_path, rng):
    """3 classes; every mode the loader must convert: L, RGB, RGBA, P (with and without
    transparency), 1-bit and 16-bit, sizes from 9×13 to 64×48; plus files that are skipped."""
    root = tmp_path / "pets"
    gray = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    _save(root / "bird" / "a.png", gray)                                        # L 28×28, kept as is
    _save(root / "bird" / "b.jpg", rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))  # RGB JPEG
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the left half opaque
    rgba[:, :32, 3] = 255
    _save(root / "cat" / "c.png", rgba)
    _save(root / "cat" / "d.png", rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), "P")
    palette = Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("P")
    palette.info["transparency"] = 0
    root.joinpath("cat", "e.png").parent.mkdir(parents=True, exist_ok=True)
    palette.save(root / "cat" / "e.png", transparency=0)
    _save(root / "dog" / "f.png", (rng.random((28, 28)) > 0.5).astype(np.uint8) * 255, "1")
    Image.fromarray(np.full((28, 28), 65535, np.uint16)).save(root / "dog" / "g.png")  # 16-bit
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_load_folder_converts_every_mode_and_size(folder):
    lines = []
    x, y, names = load_folder(folder, (1, 28, 28), report=lines.append)
    assert names == ["bird", "cat", "dog"]
    assert x.shape == (7, 1, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert len(lines) == 1
    assert "7 images in 3 classes" in lines[0] and "1 other file skipped" in lines[0]
    assert "RGB → grayscale" in lines[0] and "resized to 28×28 (from 9×13 … 48×64)" in lines[0]
    original = np.asarray(Image.open(folder / "bird" / "a.png"))
    np.testing.assert_array_equal(x[0, 0], original)  # nothing to convert: bit for bit
    # transparency is composited onto black: the opaque white half stays white, the rest is 0
    assert x[2, 0, :, :10].min() == 255 and x[2, 0, :, 18:].max() == 0
    assert set(np.unique(x[5]).tolist()) == {0, 255}  # 1-bit → 0 and 255
    np.testing.assert_array_equal(x[6], 255)  # 16-bit full scale → 255


def test_load_folder_rgb_target_replicates_gray(folder):
    x, _, _ = load_folder(folder, (3, 16, 20))
    assert x.shape == (7, 3, 16, 20)
    np.testing.assert_array_equal(x[0, 0], x[0, 1])
    np.testing.assert_array_equal(x[0, 0], x[0, 2])


def test_rgb_to_gray_uses_luma(tmp_path):
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[0, 1] = (0, 255, 0)
    pixels[1, 0] = (0, 0, 255)
    pixels[1, 1] = (255, 255, 255)
    path = _save(tmp_path / "rgb.png", pixels)
    image, note = read_image(path, (1, 2, 2))
    # Pillow's ITU-R 601: L = 0.299·R + 0.587·G + 0.114·B, rounded
    assert image[0].tolist() == [[76, 150], [29, 255]]
    assert note == f"{path}: RGB 2×2 → grayscale 2×2"
    _, note = read_image(_save(tmp_path / "g.png", pixels[..., 0]), (1, 2, 2))
    assert note is None


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((10, 20), np.uint8)
    pixels[:, :10] = 255  # left half white; orientation 6 shows it rotated 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    image = load_image(path, (1, 20, 10))
    assert image[0, :10].mean() > 200 and image[0, 10:].mean() < 50  # the white half is on top


def test_corrupt_truncated_and_non_images_name_the_file(folder, tmp_path):
    good = (folder / "bird" / "a.png").read_bytes()
    broken = folder / "cat" / "broken.png"
    broken.write_bytes(good[: len(good) // 2])
    with pytest.raises(cl.DataError, match=r"broken\.png: corrupt or truncated image"):
        load_folder(folder, (1, 28, 28))
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    with pytest.raises(cl.DataError, match=r"fake\.jpg: not an image file"):
        load_image(fake, (1, 28, 28))
    with pytest.raises(cl.DataError, match=r"missing\.png: no such file"):
        load_image(tmp_path / "missing.png", (1, 28, 28))


@pytest.mark.parametrize("side", [11, 15])  # 121 px: Pillow warns; 225 px > 2·100: it raises
def test_decompression_bombs_are_refused(tmp_path, monkeypatch, side):
    path = _save(tmp_path / "bomb.png", np.zeros((side, side), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(cl.DataError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path, (1, 28, 28))


def test_folder_layout_errors(tmp_path, rng):
    with pytest.raises(cl.DataError, match="no such folder"):
        load_folder(tmp_path / "nowhere", (1, 28, 28))
    (tmp_path / "flat").mkdir()
    _save(tmp_path / "flat" / "x.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(cl.DataError, match="one subfolder per class"):
        load_folder(tmp_path / "flat", (1, 28, 28))
    (tmp_path / "flat" / "empty").mkdir()
    with pytest.raises(cl.DataError, match="'empty' has no image files"):
        load_folder(tmp_path / "flat", (1, 28, 28))
    with pytest.raises(cl.DataError, match="expects 4 channels"):
        load_image(tmp_path / "flat" / "x.png", (4, 28, 28))
