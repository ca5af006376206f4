"""Datasets, image folders, preprocessing, mini-batches and augmentation (transforms, warp: the
resampling ones, augment: a spec such as "flip,crop=2,rotate=15" read into them); `Source`
reads any of them (a name or a folder) the way the `cnnlab` command does.

May import only cnnlab.core, cnnlab.files, cnnlab.runtime and its own modules (never io, layers,
train, viz or cli): what it tells the user goes to a `report` callable, not to print.
"""

from cnnlab.data import transforms
from cnnlab.data.augment import augmentation
from cnnlab.data.datasets import DEFAULT, class_names, is_available, load, locate
from cnnlab.data.download import download
from cnnlab.data.folder import FolderImages, load_folder, load_image, take
from cnnlab.data.loader import Loader, Preprocess
from cnnlab.data.sources import Source

__all__ = ["DEFAULT", "FolderImages", "Loader", "Preprocess", "Source", "augmentation", "class_names",
           "download", "is_available", "load", "load_folder", "load_image", "locate", "take",
           "transforms"]
