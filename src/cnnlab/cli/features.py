"""`cnnlab features`: a layer's activations for image files (--out FILE.npz), and the images of a
folder nearest to each of them in that feature space (--neighbours FOLDER: an HTML page).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

import cnnlab as cl
from cnnlab.cli.common import Failure, UsageError, one_line, printable, say
from cnnlab.core import volume
from cnnlab.data.folder import EXTENSIONS, read_image
from cnnlab.data.sources import readable
from cnnlab.files import atomic_write
from cnnlab.train.features import feature_layer, nearest

#: images decoded and passed through the model at a time (the folder's features are kept, its
#: images are not: the page reads the few it shows again)
CHUNK = 64


def cmd_features(args) -> int:
    """cnnlab features MODEL IMAGE... [--layer NAME] [--out FILE.npz] [--neighbours FOLDER]:
    exit status 1 if an image could not be read (the others are used)."""
    if args.out is None and args.neighbours is None:
        raise UsageError("say what to write: --out FILE.npz (the features), --neighbours FOLDER "
                         "(an HTML page of the nearest images), or both")
    model = cl.load(args.model)
    if model.preprocess is None:
        raise Failure(f"{args.model} records no preprocessing (it was trained on float arrays), so "
                      "cnnlab cannot turn image files into its input; train it on uint8 images")
    try:
        layer, _ = feature_layer(model, args.layer)
    except ValueError as error:
        raise UsageError(f"--layer: {one_line(error)}") from None
    files = image_files(args.images, "IMAGE")
    feats, names, images, failed = extract(model, layer, files, keep_images=True)
    if not names:
        raise Failure("no image could be read")
    shape = volume(feats.shape[1:])
    if args.out is not None:
        write_npz(args.out, feats, names, layer, args.model)
        say(f"features of {layer} ({shape}) for {len(names)} image{'s' if len(names) > 1 else ''}"
            f" → {printable(args.out)}")
    if args.neighbours is not None:
        failed += _neighbours(args, model, layer, (feats, names, images))
    return 1 if failed else 0


def image_files(paths: list[str], what: str) -> list[str]:
    """The image files named: files as given, a folder as every image file under it (by
    extension, sorted, hidden ones skipped, links to folders not followed)."""
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        found = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(root, n) for n in sorted(names)
                      if not n.startswith(".") and Path(n).suffix.lower() in EXTENSIONS]
        if not found:
            raise Failure(f"{printable(path)}: no image files ({', '.join(EXTENSIONS)}) in this "
                          f"folder ({what})")
        files += found
    return files


def extract(model, layer: str, files: list[str], *, keep_images: bool = False):
    """(features (N, ...), the N files read, their images if keep_images, the number of files
    that could not be read, each said on stderr)."""
    parts, names, images, failed = [], [], [], 0
    for start in range(0, len(files), CHUNK):
        batch = []
        for path in files[start : start + CHUNK]:
            try:
                image, _ = read_image(path, model.input_shape, model.preprocess.resize)
            except cl.DataError as error:
                say(f"cnnlab: error: {one_line(error)}")
                failed += 1
                continue
            batch.append(image)
            names.append(path)
        if batch:
            parts.append(cl.features(model, np.stack(batch), layer=layer))
            images += batch if keep_images else []
    feats = np.concatenate(parts) if parts else np.empty((0,), model.dtype)
    return feats, names, images, failed


def write_npz(path: str, feats: np.ndarray, names: list[str], layer: str, model: str) -> None:
    """features (N, ...), files (N,) str, layer and model (str): plain arrays (no object
    arrays, so NumPy reads the file with its default, safe settings); written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, features=feats, files=np.array([readable(n) for n in names], dtype=str),
             layer=np.array(layer), model=np.array(readable(str(model))))
    atomic_write(path, buffer.getvalue())


def _neighbours(args, model, layer: str, queries) -> int:
    """Writes the --page of the --top nearest images of --neighbours FOLDER to each query: the
    number of folder images that could not be read."""
    feats, names, images = queries
    if not os.path.isdir(args.neighbours):
        raise Failure(f"{printable(args.neighbours)}: no such folder (--neighbours)")
    pool_files = image_files([args.neighbours], "--neighbours")
    pool, pool_names, _, failed = extract(model, layer, pool_files)
    if not pool_names:
        raise Failure(f"{printable(args.neighbours)}: no image could be read")
    where = {os.path.realpath(p): i for i, p in enumerate(pool_names)}
    exclude = np.array([where.get(os.path.realpath(n), -1) for n in names])
    indices, distances = nearest(feats, pool, args.top, distance=args.distance, exclude=exclude)
    shown = {int(j) for j in indices.ravel()}
    shapes = model.input_shape, model.preprocess.resize
    pictures = [(os.path.relpath(p, args.neighbours), read_image(p, *shapes)[0] if i in shown
                 else None) for i, p in enumerate(pool_names)]
    page = cl.viz.neighbours_page(
        args.page, list(zip(names, images, strict=True)), pictures, indices, distances,
        title=f"{Path(args.model).name}, layer {layer}", distance=args.distance,
        note=f"{len(pool_names)} images of {args.neighbours}; a query found in the folder is not "
             "its own neighbour.")
    say(f"the {indices.shape[1]} nearest of {len(pool_names)} images ({args.distance} distance on "
        f"{layer}) for {len(names)} quer{'ies' if len(names) > 1 else 'y'} → {printable(str(page))}")
    return failed
