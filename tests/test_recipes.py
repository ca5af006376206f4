"""The named recipes (issue 19): `cnnlab train --recipe fast|strong|long` reads a TOML file of train
options shipped in the package (cli/recipes/NAME.toml); -c FILE and flags override it, a resumed
run keeps it, and each recipe names the full Fashion-MNIST with flip test-time augmentation."""

from __future__ import annotations

import importlib.resources
import tomllib

import pytest

from cnnlab.cli import build_parser
from cnnlab.cli.common import UsageError
from cnnlab.cli.train import RECIPES, recipe_options, train_options
from tests.test_cli import cnnlab

SHORT = ["--data", "fashion-mnist-mini", "--limit", "300", "--epochs", "1", "--model", "mlp"]


def options(*argv: str) -> dict:
    args = build_parser().parse_args(["train", *argv])
    return train_options(args)[0]


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_is_a_shipped_file_of_valid_train_options(name):
    """The file is in the installed package (package data), its keys are long flags with valid
    values, and it trains on the full Fashion-MNIST, validation held out, with flip TTA."""
    text = (importlib.resources.files("cnnlab.cli") / "recipes" / f"{name}.toml").read_text()
    raw = tomllib.loads(text)
    opts = recipe_options(name, build_parser().parse_args(["train"]).actions)
    assert set(opts) == set(raw) and "recipe" not in opts
    assert opts["data"] == "fashion-mnist" and opts["tta"] == "flip"
    assert "val-split" not in opts  # the default 0.1: the test split is touched once, at the end
    assert options("--recipe", name) == {**opts, "recipe": name, "seed": 0, "val-split": 0.1}


def test_the_strong_recipe_is_the_fast_one_twice_as_long():
    actions = build_parser().parse_args(["train"]).actions
    fast, strong = (recipe_options(name, actions) for name in ("fast", "strong"))
    assert (fast["epochs"], strong["epochs"]) == (15, 30)
    assert fast["augment"] == "flip=0.5"  # mirroring, as the run records it
    assert {**fast, "epochs": 30} == strong


def test_the_long_recipe_is_the_strong_one_longer_with_one_pixel_shifts():
    """The run that reached 94.50% in 46 min 41 s (README) was `--recipe strong --epochs 50
    --augment flip,crop=1`: the long recipe is exactly that."""
    actions = build_parser().parse_args(["train"]).actions
    strong, long = (recipe_options(name, actions) for name in ("strong", "long"))
    assert long == {**strong, "epochs": 50, "augment": "flip=0.5,crop=1"}
    assert options("--recipe", "long") == options("--recipe", "strong", "--epochs", "50",
                                                  "--augment", "flip,crop=1") | {"recipe": "long"}


def test_flags_and_a_config_file_override_the_recipe(tmp_path):
    assert options("--recipe", "fast", "--epochs", "3", "--seed", "2")["epochs"] == 3
    assert options("--recipe", "fast", "--tta", "none")["tta"] == "none"
    config = tmp_path / "mine.toml"
    config.write_text('recipe = "strong"\nmodel = "resnet8"\nepochs = 2\n')
    opts = options("-c", str(config))
    assert (opts["recipe"], opts["model"], opts["epochs"], opts["lr"]) == ("strong", "resnet8", 2, 0.1)
    assert options("-c", str(config), "--recipe", "fast")["recipe"] == "fast"


def test_another_optimizer_drops_the_recipes_rate_momentum_and_decay(tmp_path):
    """The recipe's lr 0.1 and momentum were chosen for SGD: --optimizer adam (or a config file
    naming it) takes Adam's defaults, as it does over a resumed run's config.toml."""
    adam = options("--recipe", "fast", "--optimizer", "adam")
    assert (adam["lr"], adam["weight-decay"], "momentum" in adam) == (1e-3, 0.0, False)
    config = tmp_path / "adamw.toml"
    config.write_text('optimizer = "adamw"\n')
    adamw = options("--recipe", "fast", "-c", str(config))
    assert (adamw["lr"], adamw["weight-decay"]) == (1e-3, 1e-2)
    assert options("--recipe", "fast", "--optimizer", "sgd")["lr"] == 0.1


def test_an_unknown_recipe_is_a_usage_error_naming_the_choices(tmp_path):
    bad = cnnlab("train", "--recipe", "fastest", cwd=tmp_path)
    assert bad.returncode == 2 and "--recipe" in bad.stderr and "fast" in bad.stderr
    config = tmp_path / "bad.toml"
    config.write_text('recipe = "fastest"\n')
    wrong = cnnlab("train", "-c", config, cwd=tmp_path)
    assert wrong.returncode == 2 and "recipe" in wrong.stderr and "fast, strong, long" in wrong.stderr
    with pytest.raises(UsageError, match="not one of fast, strong, long"):
        recipe_options("fastest", build_parser().parse_args(["train"]).actions)


def test_a_run_of_a_recipe_records_it_applies_its_tta_and_resumes_on_it(tmp_path):
    """A short run of the fast recipe on the bundled subset: config.toml records the recipe and
    the values it gave; the test line says flip TTA; resuming keeps the recipe, and another
    recipe on the resumed run is a usage error naming --recipe."""
    run = cnnlab("train", "--recipe", "fast", *SHORT, "--out", "r", "-q", cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    config = (tmp_path / "r" / "config.toml").read_text()
    for line in ('recipe = "fast"', 'tta = "flip"', "label-smoothing = 0.1", 'augment = "flip=0.5"',
                 "lr = 0.1", 'model = "mlp"', "epochs = 1"):
        assert line in config, config
    assert "with test-time augmentation flip" in run.stdout
    more = cnnlab("train", "--resume", "r", "--epochs", "2", "-q", cwd=tmp_path, timeout=300)
    assert more.returncode == 0, more.stderr
    assert 'recipe = "fast"' in (tmp_path / "r" / "config.toml").read_text()
    other = cnnlab("train", "--resume", "r", "--recipe", "strong", "--epochs", "3", cwd=tmp_path)
    assert other.returncode == 2 and "--recipe strong contradicts" in other.stderr
