"""Datasets, preprocessing, mini-batches and augmentation."""

from cnnlab.data import transforms
from cnnlab.data.datasets import DEFAULT, class_names, is_available, load, locate
from cnnlab.data.download import download
from cnnlab.data.folder import load_folder, load_image
from cnnlab.data.loader import Loader, Preprocess

__all__ = ["DEFAULT", "Loader", "Preprocess", "class_names", "download", "is_available", "load",
           "load_folder", "load_image", "locate", "transforms"]
