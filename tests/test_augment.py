"""Augmentation: random rotation, random resized crop and colour jitter (shape, range,
determinism under a seed, identity at 0, against a naive loop), the --augment syntax (round
trip, one-line errors naming the term), the presets unchanged bit for bit, and a resumed run
with the new terms equal to the uninterrupted one."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

import cnnlab as cl
from cnnlab.cli.parser import build_parser
from cnnlab.cli.runs import read_config, write_config
from cnnlab.cli.train import make_augment
from cnnlab.data import augment
from cnnlab.data import transforms as T
from cnnlab.data.warp import bilinear, rotate
from tests.test_viz import cnnlab as here

NEW = [T.RandomRotation(30), T.RandomRotation(20, fill=-1.5), T.RandomResizedCrop(),
       T.RandomResizedCrop((0.5, 1), (0.5, 2)), T.ColorJitter(0.4, 0.4), T.ColorJitter(brightness=0.3),
       T.ColorJitter(contrast=0.5)]
IDS = [f"{type(t).__name__}-{i}" for i, t in enumerate(NEW)]


def pixels(rng, shape=(6, 3, 9, 7)):
    return rng.random(shape).astype(np.float32)  # on [0, 1]: what ColorJitter takes unbound


@pytest.mark.parametrize("transform", NEW, ids=IDS)
@pytest.mark.parametrize("shape", [(6, 3, 9, 7), (5, 1, 8, 8)])
def test_shape_dtype_and_the_input_are_kept(transform, shape, rng):
    x = pixels(rng, shape)
    before = x.copy()
    y = transform(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("transform", NEW, ids=IDS)
def test_the_same_seed_gives_the_same_batch_and_another_seed_another(transform, rng):
    x = pixels(rng)
    a, b = transform(x, np.random.default_rng(5)), transform(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, transform(x, np.random.default_rng(6)))


@pytest.mark.parametrize("transform", [t for t in NEW if not isinstance(t, T.ColorJitter)],
                         ids=[i for i, t in zip(IDS, NEW, strict=True) if not isinstance(t, T.ColorJitter)])
def test_resampling_stays_within_the_values_it_reads(transform, rng):
    # bilinear weights are ≥ 0 and sum to 1: every output is between the image's extremes
    # (and the fill value, where there is one)
    x = 3 * rng.standard_normal((6, 2, 10, 8)).astype(np.float32)
    y = transform(x, np.random.default_rng(1))
    fill = getattr(transform, "fill", "edge")
    low = x.min(axis=(1, 2, 3)) if fill == "edge" else np.minimum(x.min(axis=(1, 2, 3)), fill)
    high = x.max(axis=(1, 2, 3)) if fill == "edge" else np.maximum(x.max(axis=(1, 2, 3)), fill)
    assert (y.min(axis=(1, 2, 3)) >= low - 1e-5).all() and (y.max(axis=(1, 2, 3)) <= high + 1e-5).all()
    constant = np.full((4, 1, 6, 6), 0.25, np.float32)
    if fill == "edge":
        np.testing.assert_allclose(transform(constant, np.random.default_rng(2)), 0.25, rtol=1e-6)


def test_parameter_zero_is_the_identity(rng):
    x = 5 * rng.standard_normal((4, 3, 7, 7)).astype(np.float32)
    np.testing.assert_array_equal(T.RandomRotation(0)(x, rng), x)
    np.testing.assert_array_equal(T.RandomRotation(0, fill=9.0)(x, rng), x)
    np.testing.assert_array_equal(T.RandomResizedCrop((1, 1), (1, 1))(x, rng), x)
    p = pixels(rng)
    np.testing.assert_array_equal(T.ColorJitter(0, 0)(p, rng), p)
    pre = cl.data.Preprocess([0.3, 0.5, 0.2], [0.2, 0.3, 0.25])
    x = pre((p * 255).astype(np.uint8))
    np.testing.assert_allclose(T.ColorJitter(0, 0, preprocess=pre)(x, rng), x, atol=2e-6)


def test_bilinear_matches_a_naive_loop(rng):
    x = rng.standard_normal((2, 3, 5, 6))
    rows, cols = rng.uniform(0, 4, (2, 4, 3)), rng.uniform(0, 5, (2, 4, 3))
    rows[0, 0, 0], cols[0, 0, 0] = 4, 5  # the last pixel exactly: its right/lower neighbour is outside
    expected = np.zeros((2, 3, 4, 3))
    for n, i, j in np.ndindex(2, 4, 3):
        r, c = rows[n, i, j], cols[n, i, j]
        r0, c0 = int(r), int(c)
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
            weight = (r - r0 if dr else 1 - r + r0) * (c - c0 if dc else 1 - c + c0)
            if weight:
                expected[n, :, i, j] += weight * x[n, :, r0 + dr, c0 + dc]
    np.testing.assert_allclose(bilinear(x, rows, cols), expected, rtol=1e-12, atol=1e-12)


def test_rotation_turns_counterclockwise_about_the_centre(rng):
    x = rng.standard_normal((3, 2, 6, 6))
    np.testing.assert_allclose(rotate(x, np.full(3, 90.0)), np.rot90(x, axes=(2, 3)), atol=1e-9)
    np.testing.assert_allclose(rotate(x, np.full(3, 180.0)), x[:, :, ::-1, ::-1], atol=1e-9)
    np.testing.assert_allclose(rotate(x, np.array([-90.0, 270.0, 90.0]))[:2],
                               np.rot90(x[:2], k=-1, axes=(2, 3)), atol=1e-9)
    # the corners of a 45° turn come from outside: the edge is repeated, or `fill` is blended in
    ones = np.ones((1, 1, 9, 9))
    assert rotate(ones, np.array([45.0]))[0, 0, 0, 0] == 1
    assert rotate(ones, np.array([45.0]), fill=0.0)[0, 0, 0, 0] == 0
    # the angles are uniform on [−degrees, degrees], one per image
    angles = np.random.default_rng(3).uniform(-30, 30, 3)
    np.testing.assert_array_equal(T.RandomRotation(30)(x, np.random.default_rng(3)), rotate(x, angles))


def test_resized_crop_boxes_follow_torchvisions_rule():
    crop = T.RandomResizedCrop()
    top, left, h, w = crop.boxes(2000, 28, 28, np.random.default_rng(0))
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all()
    area = h * w / 28 ** 2
    assert area.min() >= 0.07 and area.max() <= 1 and 0.4 < np.median(area) < 0.6
    assert (w / h).min() >= 0.75 * 0.85 and (w / h).max() <= 4 / 3 / 0.85  # rounding to pixels
    # none of 10 draws fits (a ratio far from the image's): the middle, cut to the nearest ratio
    top, left, h, w = T.RandomResizedCrop((0.9, 1), (3, 4)).boxes(5, 12, 12, np.random.default_rng(0))
    assert (h == 4).all() and (w == 12).all() and (top == 4).all() and (left == 0).all()


def test_resized_crop_stretches_its_box_back_to_the_full_size():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)

    class Fixed(T.RandomResizedCrop):
        def boxes(self, n, h, w, rng):  # the top-left 2×2 block
            return np.zeros(n, int), np.zeros(n, int), np.full(n, 2), np.full(n, 2)

    y = Fixed()(x, np.random.default_rng(0))[0, 0]
    # pixel centres aligned: output row i reads row (i + ½)/2 − ½ of the box, held inside it
    rows = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1)
    expected = (rows[:, None] * 4 + rows[None, :])  # x[r, c] = 4r + c is linear: exact
    np.testing.assert_allclose(y, expected)


def test_colour_jitter_clips_to_the_pixel_range_through_the_preprocessing(rng):
    raw = (rng.random((32, 3, 6, 6)) * 255).astype(np.uint8)
    pre = cl.data.Preprocess.fit(raw)
    low, high = (-pre.mean / pre.std).reshape(1, 3, 1, 1), ((1 - pre.mean) / pre.std).reshape(1, 3, 1, 1)
    loader = cl.data.Loader(raw, np.zeros(32, np.int64), 32, preprocess=pre,
                            transform=T.Compose([T.RandomFlip(), T.ColorJitter(1.0, 1.0)]))
    assert loader.transform.transforms[1].preprocess is pre  # the Loader told it
    xb, _ = next(loader.batches(0))
    assert (xb >= low - 1e-5).all() and (xb <= high + 1e-5).all()
    assert np.isclose(xb, low, atol=1e-5).any() and np.isclose(xb, high, atol=1e-5).any()


def test_colour_jitter_is_the_formula(rng):
    x = pixels(rng, (5, 3, 4, 4))
    draws = np.random.default_rng(9)
    b = draws.uniform(0.7, 1.3, 5).astype(np.float32)[:, None, None, None]
    c = draws.uniform(0.5, 1.5, 5).astype(np.float32)[:, None, None, None]
    u = np.clip(x * b, 0, 1)
    grey = (0.299 * u[:, 0] + 0.587 * u[:, 1] + 0.114 * u[:, 2]).mean(axis=(1, 2))[:, None, None, None]
    expected = np.clip(c * u + (1 - c) * grey, 0, 1)
    got = T.ColorJitter(0.3, 0.5)(x, np.random.default_rng(9))
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ------------------------------------------------------------------ the syntax
@pytest.mark.parametrize("text, written", [
    ("none", "none"), ("flip-crop", "flip-crop"), ("flip-crop-erase", "flip-crop-erase"),
    ("flip,crop=2,rotate=15", "flip=0.5,crop=2,rotate=15"),
    (" flip=1 , resized-crop ", "flip=1,resized-crop=0.08"),
    ("flip-crop,brightness=0.3,contrast", "flip=0.5,crop=2,brightness=0.3,contrast=0.2"),
    ("rotate=12.3456789,erase=0.25", "rotate=12.3456789,erase=0.25"),
])
def test_a_spec_is_written_with_every_value_and_reads_back_unchanged(text, written):
    assert augment.canonical(text) == written
    assert augment.canonical(written) == written
    built = augment.augmentation(written)
    assert (built is None) == (written == "none")


@pytest.mark.parametrize("text, error", [
    ("flip,rotat=15", "unknown term 'rotat=15' in 'flip,rotat=15'; the terms are flip[=P], crop[=PAD]"),
    ("rotate=abc", "term 'rotate=abc': expected degrees in [0, 180]"),
    ("rotate=200", "term 'rotate=200': expected degrees in [0, 180]"),
    ("crop=1.5", "term 'crop=1.5': expected an integer ≥ 0 (pixels)"),
    ("flip=nan", "term 'flip=nan': expected a probability in [0, 1]"),
    ("resized-crop=0", "term 'resized-crop=0': expected the smallest area, a fraction in (0, 1]"),
    ("brightness=", "term 'brightness=': give a value after '='"),
    ("flip,,crop", "an empty term in 'flip,,crop'"),
    ("none,flip", "'none' stands alone"),
    ("", "empty augmentation"),
])
def test_a_bad_spec_names_the_term(text, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        augment.canonical(text)


def test_the_flag_and_the_config_file_refuse_a_bad_term_in_one_line(capsys, tmp_path):
    status, out, err = here(capsys, "train", "--augment", "flip,rotat=15")
    assert status == 2 and out == ""
    assert err.splitlines()[-1] == ("cnnlab train: error: argument --augment: unknown term 'rotat=15' "
                                    f"in 'flip,rotat=15'; the terms are {augment.SYNTAX}")
    (tmp_path / "r.toml").write_text('augment = "flip,rotate=999"\n')
    status, _, err = here(capsys, "train", "-c", tmp_path / "r.toml")
    assert status == 2 and "augment: term 'rotate=999': expected degrees in [0, 180]" in err
    assert len(err.strip().splitlines()) == 1


def test_config_toml_records_the_spec_and_reads_it_back(tmp_path):
    args = build_parser().parse_args(["train", "--augment", "flip,rotate=12.5,contrast"])
    assert args.augment == "flip=0.5,rotate=12.5,contrast=0.2"
    write_config(tmp_path / "config.toml", {"augment": args.augment, "seed": 3})
    assert read_config(tmp_path / "config.toml", args.actions) == {"augment": args.augment, "seed": 3}


def test_the_presets_draw_what_they_always_drew(rng):
    x = rng.standard_normal((16, 1, 12, 12)).astype(np.float32)
    old = {"flip-crop": T.Compose([T.RandomFlip(), T.RandomCrop(2)]),
           "flip-crop-erase": T.Compose([T.RandomFlip(), T.RandomCrop(2), T.RandomErasing()])}
    for name, transform in old.items():
        expected = transform(x, np.random.default_rng(11))
        np.testing.assert_array_equal(make_augment(name)(x, np.random.default_rng(11)), expected)
        spelled = augment.PRESETS[name]  # the same list written as terms
        np.testing.assert_array_equal(make_augment(spelled)(x, np.random.default_rng(11)), expected)
    assert make_augment("none") is None
    assert augment.augmentation("flip-crop").config() == old["flip-crop"].config()


def test_a_resumed_run_with_the_new_terms_equals_the_uninterrupted_one(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["-q", "train", "--model", "mlp", "--data", "fashion-mnist-mini", "--limit", "256",
              "--batch-size", "64", "--val-split", "0", "--schedule", "constant",  # the same lr in both
              "--augment", "flip,rotate=10,resized-crop=0.5,brightness,contrast"]
    assert here(capsys, *common, "--epochs", "2", "--out", "full")[0] == 0
    assert here(capsys, *common, "--epochs", "1", "--out", "half")[0] == 0
    status, _, err = here(capsys, "-q", "train", "--resume", "half", "--epochs", "2")
    assert status == 0, err
    assert "augment flip=0.5,rotate=10,resized-crop=0.5,brightness=0.2,contrast=0.2" in err
    a, b = cl.load("full/model.safetensors"), cl.load("half/model.safetensors")
    for (name, p), q in zip(a.parameters().items(), b.parameters().values(), strict=True):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    # and the augmentation mattered: without it the weights differ
    assert here(capsys, *common[:-2], "--epochs", "2", "--out", "plain")[0] == 0
    plain = cl.load("plain/model.safetensors")
    assert not np.array_equal(plain.parameters()["dense_1.weight"].data,
                              a.parameters()["dense_1.weight"].data)


def test_the_type_function_is_what_argparse_names():
    from cnnlab.cli.common import augment_spec

    with pytest.raises(argparse.ArgumentTypeError, match="unknown term 'x'"):
        augment_spec("x")
    assert augment_spec("flip-crop") == "flip-crop"
