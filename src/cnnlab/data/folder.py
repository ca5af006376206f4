"""Image files: a folder with one subfolder per class (the ImageNet layout), or single images.

    root/
      cat/  001.png  002.jpg ...
      dog/  a.jpeg ...

Each image (PNG, JPEG, BMP, GIF, WebP, TIFF or PPM/PGM, of any size and mode) becomes the
model's input (C, H, W) as uint8:
  - its EXIF orientation is applied (photos from phones);
  - transparency is composited onto black (Fashion-MNIST's background);
  - 16-bit and float images are scaled to 0–255;
  - C = 1: grayscale by Pillow's ITU-R 601 luma, L = 0.299·R + 0.587·G + 0.114·B; C = 3: RGB;
  - the size becomes H×W by Lanczos resampling, by one of three rules (RESIZE): "stretch" (the
    default: the whole image, the aspect ratio not kept), "center-crop" (the shorter side
    scaled to fit, then the middle H×W cut out: the aspect ratio kept, the edges lost) or
    "center-crop:N" (the shorter side scaled to N pixels, then the middle H×W cut out:
    torchvision's Resize(256) + CenterCrop(224) is "center-crop:256" for a 224×224 model, the
    protocol of the published ImageNet accuracies). A model records its rule
    (Preprocess.resize), and predict and evaluate read images by it.
Colours are never inverted: Fashion-MNIST and MNIST are light objects on a dark background, so
a photo of a dark shirt on a white table needs inverting by the user.

A large folder, or one read by one of several processes (data-parallel training), is read
lazily: `FolderImages` lists the files and decodes only the images a batch indexes, so memory
holds a batch, not the folder, and each process decodes only its own share.

Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) stays in force: an image above it is
refused with a DataError, as is a corrupt, truncated or unreadable file, always naming the file.
Only the formats above are decoded, whatever the file's name: Pillow's other plugins (EPS, which
runs Ghostscript, PSD, FITS, ...) are never handed a file from a stranger.
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cnnlab.core import DataError
from cnnlab.files import read_regular

#: file name endings read as images; other files in a class folder are skipped (and counted)
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: the Pillow decoders used (JPEG opens the multi-picture MPO files of phone cameras too)
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF", "PPM")
#: how an image of another size becomes H×W (see the module docstring); "center-crop:N" takes
#: the shorter side's size N, 1 ≤ N ≤ MAX_SHORTER_SIDE
RESIZE = ("stretch", "center-crop", "center-crop:N")
MAX_SHORTER_SIDE = 1 << 14
#: load_folder(lazy=None) decodes a folder whole up to this many bytes of pixels, lazily above
EAGER_BYTES = 2 << 30


def check_resize(rule: str) -> str:
    if rule in RESIZE[:2] or shorter_side(rule) is not None:
        return rule
    raise ValueError(f"resize must be one of {', '.join(RESIZE)} (N a whole number of pixels, "
                     f"1 to {MAX_SHORTER_SIDE}). Received: resize={rule!r:.80}")


def shorter_side(rule) -> int | None:
    """N of a "center-crop:N" rule; None for any other value."""
    if not isinstance(rule, str) or not rule.startswith("center-crop:"):
        return None
    digits = rule.removeprefix("center-crop:")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 5 and digits[0] != "0"):
        return None
    return int(digits) if int(digits) <= MAX_SHORTER_SIDE else None


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is a runtime dependency
        raise DataError("reading image files needs Pillow: pip install pillow") from None
    return Image, ImageOps


def _mode_name(mode: str) -> str:
    return {"L": "grayscale", "1": "1-bit", "P": "palette", "LA": "grayscale+alpha"}.get(mode, mode)


def _target(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or not all(int(d) > 0 for d in input_shape):
        raise DataError(f"images need a model input (C, H, W). Received: input_shape={tuple(input_shape)}")
    c, h, w = (int(d) for d in input_shape)
    if c not in (1, 3):
        raise DataError(f"the model expects {c} channels; images give 1 (grayscale) or 3 (RGB)")
    return c, h, w


def _decode(path: Path, c: int, h: int, w: int, resize: str = "stretch"
            ) -> tuple[np.ndarray, str, tuple[int, int]]:
    """(C, H, W) uint8, the source mode and (height, width) of the file at `path`."""
    Image, ImageOps = _pillow()
    # Pillow reads from memory: a chunk length in a damaged header can never make it allocate
    # more than the file holds
    raw = io.BytesIO(_read(path))
    try:
        with warnings.catch_warnings():
            # above MAX_IMAGE_PIXELS Pillow only warns (it raises above twice that): refuse both
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # damaged metadata ("Corrupt EXIF data"): the pixels decode or fail on their own
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            with Image.open(raw, formats=FORMATS) as image:
                image.load()
                mode, (width, height) = image.mode, image.size
                image = ImageOps.exif_transpose(image)
                image = _resized(_to_mode(image, "L" if c == 1 else "RGB"), h, w, resize)
                array = np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"{path}: refused as a possible decompression bomb ({error})") from None
    except MemoryError:
        raise DataError(f"{path}: too large to decode in the memory available") from None
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not an image file cnnlab reads (PNG, JPEG, BMP, GIF, WebP, TIFF, "
                        "PPM/PGM)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # Pillow reports truncated or corrupt data as OSError, ValueError or SyntaxError
        raise DataError(f"{path}: corrupt or truncated image ({error})") from None
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return np.ascontiguousarray(array), mode, (height, width)


def _read(path: Path) -> bytes:
    """The file's bytes (files.read_regular: a regular file only, never past its size, so a FIFO
    cannot block and /dev/zero cannot fill memory); DataError naming the file otherwise."""
    try:
        return read_regular(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an image file") from None
    except OSError as error:  # a FIFO, a device, no permission
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def _resized(image, h: int, w: int, rule: str):
    """`image` at w×h by `rule`: "stretch" the whole image, or "center-crop" the shorter side
    scaled to fit ("center-crop:N": to N, or to fit if that is more) and the middle cut out."""
    Image, _ = _pillow()
    side = shorter_side(rule)
    if image.size == (w, h) and (side is None or side == min(w, h)):
        return image
    if rule == "stretch":
        return image.resize((w, h), Image.Resampling.LANCZOS)
    factor = max(w / image.size[0], h / image.size[1], (side or 0) / min(image.size))
    width, height = (max(w, round(image.size[0] * factor)), max(h, round(image.size[1] * factor)))
    left, top = (width - w) // 2, (height - h) // 2
    return image.resize((width, height), Image.Resampling.LANCZOS).crop((left, top, left + w, top + h))


def _to_mode(image, target: str):
    """`image` in mode "L" or "RGB": alpha onto black, wide integer and float data to 0–255."""
    Image, _ = _pillow()
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if image.mode == "F" and values.max(initial=0) <= 1.0:
            top = 1.0
        image = Image.fromarray(np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8))
    if "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image if image.mode == target else image.convert(target)


def load_image(path: str | os.PathLike, input_shape: Sequence[int], resize: str = "stretch") -> np.ndarray:
    """One image file as the model's input: uint8 (C, H, W), brought to H×W by `resize` (RESIZE).
    DataError naming the file if it is missing, not an image, corrupt or truncated, or above
    A large folder, or one read by one of several processes (data-parallel training), is read
lazily: `FolderImages` lists the files and decodes only the images a batch indexes, so memory
holds a batch, not the folder, and each process decodes only its own share.

Pillow's decompression-bomb limit."""
    return _decode(Path(path), *_target(input_shape), check_resize(resize))[0]


def describe_conversion(path, mode: str, size: tuple[int, int], input_shape: Sequence[int],
                        resize: str = "stretch") -> str | None:
    """"shirt.jpg: RGB 300×400 → grayscale 28×28" (sizes H×W; "28×28, center-crop" by that
    rule), or None if nothing changed."""
    c, h, w = _target(input_shape)
    target = "L" if c == 1 else "RGB"
    side = shorter_side(resize)
    cropped = size != (h, w) or side not in (None, min(h, w))
    if mode == target and not cropped:
        return None
    rule = f", {resize}" if resize.startswith("center-crop") and cropped else ""
    return f"{path}: {_mode_name(mode)} {size[0]}×{size[1]} → {_mode_name(target)} {h}×{w}{rule}"


def read_image(path: str | os.PathLike, input_shape: Sequence[int], resize: str = "stretch"
               ) -> tuple[np.ndarray, str | None]:
    """`load_image` plus the conversion it made, as `describe_conversion` words it."""
    array, mode, size = _decode(Path(path), *_target(input_shape), check_resize(resize))
    return array, describe_conversion(path, mode, size, input_shape, resize)


def class_folders(root: str | os.PathLike) -> list[Path]:
    """The class subfolders of `root`, sorted by name (hidden ones skipped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: expected one subfolder per class holding its images "
                        "(root/cat/1.png, root/dog/2.jpg, ...); found no subfolders")
    return folders


class FolderImages:
    """Image files as a lazy uint8 array (N, C, H, W): indexing decodes the images it names.

        images[i]            one image (C, H, W)
        images[idx]          a batch (len(idx), C, H, W) for an index array, mask or slice
        images.subset(idx)   the files idx names, still undecoded (take() does either)

    `shape`, `dtype`, `ndim` and len() are those of the array it stands for; np.asarray(images)
    decodes every image. Decoding errors are DataErrors naming the file, raised when the image is
    first needed.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, files: Sequence[Path], input_shape: Sequence[int], resize: str = "stretch"):
        self.files = list(files)
        self.target = _target(input_shape)
        self.resize = check_resize(resize)
        self.shape = (len(self.files), *self.target)

    def __len__(self) -> int:
        return len(self.files)

    def _positions(self, index) -> np.ndarray:
        return np.arange(len(self.files))[index]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return _decode(self.files[index], *self.target, self.resize)[0]
        positions = self._positions(index)
        out = np.empty((len(positions), *self.target), np.uint8)
        for i, at in enumerate(positions):
            out[i] = _decode(self.files[at], *self.target, self.resize)[0]
        return out

    def subset(self, index) -> FolderImages:
        return FolderImages([self.files[i] for i in self._positions(index)], self.target, self.resize)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype)

    def __repr__(self) -> str:
        return f"FolderImages({len(self.files)} files as {self.shape[1:]} uint8, decoded when indexed)"


def take(images, index):
    """images[index] without decoding: a FolderImages' subset, an array's rows."""
    return images.subset(index) if isinstance(images, FolderImages) else images[index]


def load_folder(
    root: str | os.PathLike, input_shape: Sequence[int], *, report: Callable[[str], None] | None = None,
    resize: str = "stretch", lazy: bool | None = None,
) -> tuple[np.ndarray | FolderImages, np.ndarray, list[str]]:
    """uint8 images (N, C, H, W), int64 labels (N,) and the class names (the subfolders' names,
    sorted; label i is class_names[i]) of an image folder, converted to `input_shape` (C, H, W)
    with the `resize` rule (RESIZE).

    `lazy`: True gives the images as a FolderImages (decoded when a batch needs them), False
    decodes them all now; None decodes now up to EAGER_BYTES of pixels and lazily above.
    `report`, if given, receives one line saying what was converted, e.g.
    "data/pets: 120 images in 2 classes; converted: 80 RGB → grayscale, 120 resized to 28×28
    (from 24×24 … 480×640); 1 other file skipped" (when lazy: how many images, read lazily).
    """
    c, h, w = _target(input_shape)
    check_resize(resize)
    files, labels, skipped, folders = _listing(root)
    if lazy or (lazy is None and len(files) * c * h * w > EAGER_BYTES):
        if report is not None:
            report(f"{root}: {len(files):,} images in {len(folders)} classes, decoded as batches "
                   "need them (a file that cannot be read stops the run when it is reached)"
                   + (f"; {skipped} other file{'s' if skipped > 1 else ''} skipped" if skipped else ""))
        return FolderImages(files, (c, h, w), resize), labels, [f.name for f in folders]
    x = np.empty((len(files), c, h, w), np.uint8)
    modes: list[str] = []
    sizes = np.empty((len(files), 2), np.int64)
    for i, path in enumerate(files):
        x[i], mode, sizes[i] = _decode(path, c, h, w, resize)
        modes.append(mode)
    if report is not None:
        report(_summary(root, len(folders), modes, sizes, "L" if c == 1 else "RGB", (h, w), skipped))
    return x, labels, [f.name for f in folders]


def _listing(root) -> tuple[list[Path], np.ndarray, int, list[Path]]:
    """The image files of a class folder tree, their labels, the other files' count, the class
    folders."""
    folders = class_folders(root)
    files: list[Path] = []
    labels: list[int] = []
    skipped = 0
    for label, folder in enumerate(folders):
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        images = [p for p in entries if p.is_file() and p.suffix.lower() in EXTENSIONS]
        skipped += len(entries) - len(images)
        if not images:
            raise DataError(f"{folder}: class folder {folder.name!r} has no image files "
                            f"({', '.join(EXTENSIONS)})")
        files += images
        labels += [label] * len(images)
    return files, np.array(labels, np.int64), skipped, folders


def _summary(root, classes: int, modes: list[str], sizes: np.ndarray, target: str,
             size: tuple[int, int], skipped: int) -> str:
    changed = [f"{n} {_mode_name(m)} → {_mode_name(target)}"
               for m, n in sorted(Counter(modes).items()) if m != target]
    resized = int(np.any(sizes != size, axis=1).sum())
    if resized:
        pixels = sizes.prod(axis=1)
        small, large = sizes[pixels.argmin()], sizes[pixels.argmax()]
        span = f"{small[0]}×{small[1]}"
        if pixels.min() != pixels.max():
            span += f" … {large[0]}×{large[1]}"
        changed.append(f"{resized} resized to {size[0]}×{size[1]} (from {span})")
    text = f"{root}: {len(modes):,} images in {classes} classes; "
    text += ("converted: " + ", ".join(changed)) if changed else "no conversion needed"
    if skipped:
        text += f"; {skipped} other file{'s' if skipped > 1 else ''} skipped"
    return text
