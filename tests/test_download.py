"""The verified download: only the verification is tested; no test touches the network."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

import cnnlab as cl
from cnnlab.data.download import SOURCES, download, verify

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
BASE, FILES = SOURCES["fashion-mnist"]


def need_debian():
    if not DEBIAN.is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must install dataset-fashion-mnist (see .ci/run)")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")


def from_debian(url: str) -> bytes:
    """A stand-in for the network: serves Debian's copies (recompressed, same IDX content)."""
    assert url.startswith(BASE)
    return (DEBIAN / url[len(BASE):]).read_bytes()


def test_debian_files_verify_against_the_digests():
    need_debian()
    for name, expected in FILES.items():
        verify((DEBIAN / name).read_bytes(), name, expected)


def test_download_writes_verified_files_where_load_finds_them(tmp_path):
    need_debian()
    folder = download(root=tmp_path, fetch=from_debian)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    x, y = cl.data.load("fashion-mnist", "test", root=folder)
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)


def test_valid_files_are_not_fetched_again(tmp_path):
    need_debian()
    download(root=tmp_path, fetch=from_debian)
    fetched = []
    download(root=tmp_path, fetch=lambda url: fetched.append(url) or from_debian(url))
    assert fetched == []


def test_a_damaged_file_on_disk_is_replaced(tmp_path):
    need_debian()
    download(root=tmp_path, fetch=from_debian)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"partial")
    fetched = []
    download(root=tmp_path, fetch=lambda url: fetched.append(url) or from_debian(url))
    assert fetched == [BASE + "t10k-labels-idx1-ubyte.gz"]


def test_a_tampered_download_is_refused_and_not_kept(tmp_path):
    labels = bytearray(gzip.decompress((DEBIAN / "t10k-labels-idx1-ubyte.gz").read_bytes())
                       if DEBIAN.is_dir() else bytes(10_008))
    labels[100] ^= 1  # one label changed, a valid gzip around it

    def evil(url: str) -> bytes:
        return gzip.compress(bytes(labels))

    with pytest.raises(cl.DataError, match="SHA-256 mismatch .* The file was not kept"):
        download(root=tmp_path, fetch=evil)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("payload, message", [(b"not gzip at all", "not valid gzip data"),
                                              (gzip.compress(b"x" * 10)[:-4], "not valid gzip")])
def test_corrupt_downloads(payload, message, tmp_path):
    with pytest.raises(cl.DataError, match=message):
        download(root=tmp_path, fetch=lambda url: payload)
    assert not any(tmp_path.iterdir())


def test_network_failure_is_a_data_error(tmp_path):
    def offline(url: str) -> bytes:
        raise OSError("Network is unreachable")

    with pytest.raises(cl.DataError, match="download failed .*Network is unreachable"):
        download(root=tmp_path, fetch=offline)


def test_unknown_dataset_has_no_download():
    with pytest.raises(cl.DataError, match="no verified download for 'mnist'"):
        download("mnist")
